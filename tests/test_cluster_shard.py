"""The split of traces between shards: stable (the same owner in every process and version) and balanced."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter

import pytest

from loader.cluster.shard import Shard, ShardError, owned, parse_shard, shard_of, user_hash
from tests.conftest import ROOT


def test_the_hash_is_the_documented_one():
    # int.from_bytes(SHA-256(user)[:8], "big") % N + 1, as docs/scale-out.md states it
    digest = hashlib.sha256(b"alice").digest()
    assert user_hash("alice") == int.from_bytes(digest[:8], "big")
    assert [shard_of("alice", n) for n in (1, 2, 3, 7)] == [int.from_bytes(digest[:8], "big") % n + 1
                                                            for n in (1, 2, 3, 7)]


def test_known_owners_never_change():
    # Frozen values: a change of the hash would re-split every running experiment's users.
    assert [shard_of(f"user{i:03d}", 3) for i in range(12)] == [1, 1, 1, 3, 3, 3, 3, 3, 2, 3, 3, 3]
    assert shard_of("éèà-unicode", 5) == 2


def test_the_owner_is_the_same_in_another_interpreter_with_another_hash_seed():
    code = "from loader.cluster.shard import shard_of; print([shard_of(f'u{i}', 4) for i in range(50)])"
    outputs = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2")}
    assert outputs == {str([shard_of(f"u{i}", 4) for i in range(50)]) + "\n"}


@pytest.mark.parametrize("count", [2, 3, 5])
def test_every_user_has_exactly_one_shard_and_users_are_balanced(count):
    users = [f"u{i}-{i * 7919 % 1000}" for i in range(30_000)]
    shares = [owned(users, Shard(index, count)) for index in range(1, count + 1)]
    assert sorted(u for share in shares for u in share) == sorted(users)  # a partition
    sizes = Counter({index + 1: len(share) for index, share in enumerate(shares)})
    expected = len(users) / count
    # binomial spread: sd = sqrt(n p (1-p)) < 100 here; 5 sd is far beyond chance
    assert all(abs(size - expected) < 500 for size in sizes.values()), sizes


def test_shard_designations():
    assert parse_shard("2/3") == Shard(2, 3)
    assert parse_shard(" 1 / 1 ") == Shard(1, 1) and not Shard(1, 1).sharded
    for bad in ("0/3", "4/3", "3", "a/b", "1/0", "-1/2"):
        with pytest.raises(ShardError, match="I/N|1 <= I <= N"):
            parse_shard(bad)


def test_shard_configuration_errors_name_the_key(tmp_path, capsys):
    from loader.__main__ import main
    config = tmp_path / "loader.yml"
    config.write_text("experiment:\n  name: null\n")
    assert main(["--config", str(config), "--shard", "2/3", "--validate"]) == 2
    assert "experiment:name: shards of one experiment need the same experiment:name" in capsys.readouterr().err
    assert main(["--config", str(config), "--shard", "4/3"]) == 2
    assert "--shard: shard 4/3: expected I/N with 1 <= I <= N" in capsys.readouterr().err
    assert main(["--config", str(config), "--shard", "two"]) == 2
    assert "'two' is not I/N (shard I of N, 1-based, e.g. 2/3)" in capsys.readouterr().err
    config.write_text("experiment:\n  name: x\ncluster:\n  shard: 3\n  shards: 2\n")
    assert main(["--config", str(config), "--validate"]) == 2
    assert "cluster:shard: shard 3 of 2: must be 1 to cluster:shards" in capsys.readouterr().err
    config.write_text("experiment:\n  name: x\ngeneration:\n  enabled: true\n")
    assert main(["--config", str(config), "--shard", "1/2", "--validate"]) == 2
    assert "cluster:shards: generator mode runs on one loader" in capsys.readouterr().err
