"""Images for tests with real Docker (no registry here: ``docker import`` of a local rootfs)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def tiny_image(docker_binary: str, environment: dict, scratch: Path, tag: str = "faasload-test/tiny:1") -> str:
    """An image holding only the merged-usr links (run it with ``-v /usr:/usr:ro``); returns its tag."""
    rootfs = scratch / "rootfs"
    for d in ("usr", "etc", "proc", "sys", "dev", "tmp"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        if not (rootfs / link).is_symlink():
            (rootfs / link).symlink_to(target)
    tarball = scratch / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    subprocess.run([docker_binary, "import", str(tarball), tag], env=environment, check=True, capture_output=True)
    return tag
