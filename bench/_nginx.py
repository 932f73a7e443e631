"""A minimal nginx that answers like OpenWhisk's REST API, for the bench scripts.

* ``POST .../actions/NAME`` → ``202 {"activationId":"<32 hex>"}`` with header
  ``x-openwhisk-activation-id`` (the non-blocking invoke; the id is nginx's ``$request_id``);
* ``GET .../activations/<32 hex>`` → ``200`` and a fixed, complete activation record for that id
  (success, 10 ms, cold start, outputsize and ETL times), like OpenWhisk's record;
* ``GET .../actions/NAME`` → ``200`` (the loader's action check).

One worker process (the other core is for the loader), keep-alive without limit, no access log,
bound to 127.0.0.1 on a free port, stopped by pid.  Also :func:`wrk_rate`: the endpoint's own
rate with wrk (POST, keep-alive, a few connections).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, ensure_packages  # noqa: F401  (ROOT: sys.path is set by the caller)

RECORD = ('{"activationId":"$aid","namespace":"bench","name":"bench","version":"0.0.1","subject":"bench",'
          '"publish":false,"start":1700000000000,"end":1700000000010,"duration":10,"statusCode":0,'
          '"response":{"status":"success","statusCode":0,"success":true,'
          '"result":{"outputsize":1024,"times":{"extract":1.5,"transform":2.5,"load":3.5}},"size":86},'
          '"logs":[],"annotations":[{"key":"path","value":"bench/bench"},{"key":"waitTime","value":3},'
          '{"key":"kind","value":"python:3.11"},{"key":"timeout","value":false},'
          '{"key":"limits","value":{"concurrency":1,"logs":10,"memory":256,"timeout":60000}},'
          '{"key":"initTime","value":5}]}')

_CONF = """
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 32768;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 600s;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location ~ ^/api/v1/namespaces/[^/]+/activations/(?<aid>[0-9a-f]+)$ {{
      return 200 '{record}';
    }}
    location ~ ^/api/v1/namespaces/[^/]+/actions/ {{
      if ($request_method = POST) {{
        add_header x-openwhisk-activation-id $request_id always;
        return 202 '{{"activationId":"$request_id"}}';
      }}
      return 200 '{{"name":"bench","namespace":"bench","version":"0.0.1"}}';
    }}
  }}
}}
"""


@dataclass
class Nginx:
    port: int
    process: subprocess.Popen
    directory: Path

    @property
    def apihost(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pids(self) -> list[int]:
        """The master and its worker(s), for CPU accounting."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [self.process.pid] + [int(p) for p in children.read_text().split()]
        except OSError:
            return [self.process.pid]

    def stop(self) -> None:
        from faasload.procs import stop_process
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start() -> Nginx:
    from faasload.procs import free_tcp_port, tcp_accepts, wait_until
    ensure_packages({"nginx": "nginx-light"})
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    directory = Path(tempfile.mkdtemp(prefix="faasload-bench-nginx-", dir="/tmp"))
    directory.chmod(0o755)
    port = free_tcp_port()
    conf = directory / "nginx.conf"
    conf.write_text(_CONF.format(dir=directory, port=port, record=RECORD))
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(directory)], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=open(directory / "stderr.log", "wb"))
    try:
        wait_until(lambda: tcp_accepts("127.0.0.1", port), timeout_s=10, what="nginx", process=process,
                   log_path=str(directory / "stderr.log"))
    except Exception:
        process.kill()
        raise
    return Nginx(port, process, directory)


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"incont":"in","object":"1.jpg","outcont":"out","p0":"1"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
wrk.headers["Authorization"] = "Basic MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOmtleQ=="
"""


def wrk_rate(apihost: str, *, duration_s: float, connections: int = 4, threads: int = 1) -> dict:
    """Requests/s of wrk POSTing non-blocking invokes (keep-alive, ``connections`` connections)."""
    ensure_packages({"wrk": "wrk"})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir="/tmp") as script:
        script.write(_WRK_SCRIPT)
        script.flush()
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
                              "-s", script.name, f"{apihost}/api/v1/namespaces/_/actions/bench?blocking=false"],
                             capture_output=True, text=True, timeout=duration_s + 30)
    match = re.search(r"Requests/sec:\s*([0-9.]+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out.stdout)
    latency = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out.stdout)
    return {"requests_per_s": float(match.group(1)) if match else None,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "latency_avg": latency.group(1) if latency else None,
            "connections": connections, "threads": threads, "duration_s": max(1, round(duration_s))}
