"""Check, before a run, that the platform knows every (user, action) the run will invoke."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from loader.platform.client import FetchStatus, OpenWhiskClient
from loader.platform.keys import UserKey

#: Concurrent action look-ups during the check.
CHECK_WORKERS = 8


def check_actions(client: OpenWhiskClient, keys: dict[str, UserKey], pairs: list[tuple[str, str]],
                  apihost: str) -> list[str]:
    """One problem line per (user, action) the platform does not know, or could not be asked about."""
    def look_up(pair):
        user, action = pair
        return pair, client.get_action(keys[user], action)
    problems = []
    with ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="check") as executor:
        for (user, action), outcome in executor.map(look_up, pairs):
            if outcome.status is FetchStatus.FOUND:
                continue
            if outcome.status is FetchStatus.NOT_FOUND:
                problems.append(f"action {action!r} unknown to the platform at {apihost} for user {user!r} "
                                f"(GET with the user's key answered 404; deploy it with scripts/deploy_actions.sh)")
            elif outcome.http_status in (401, 403):
                problems.append(f"user {user!r}: the platform at {apihost} rejects the key "
                                f"({outcome.reason}); check the key file in openwhisk:authkeys")
            else:
                problems.append(f"action {action!r} of user {user!r}: cannot check it at {apihost}: {outcome.reason}")
    client.close()
    return problems
