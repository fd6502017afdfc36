"""`make push` / `make pull`: the DVC cache and run-cache to and from the default remote.

The project's default remote is a local folder beside the repository (``../kd-dvc-remote``),
so that pushing and pulling work on one machine out of the box; point it at shared storage
with ``dvc remote add -d --local <name> s3://bucket/path`` (and ``dvc remote modify --local``
for ``endpointurl`` and credentials), which stays out of git. DVC's own failures are reported
as one line naming the remote; a failed transfer leaves the local cache as it was.

    python tools/remote.py push | pull
"""

import re
import subprocess
import sys

from dvc_env import dvc_environment  # tools/, beside this script


def dvc(*args):
    return subprocess.run(["dvc", *args], text=True, capture_output=True, env=dvc_environment(sys.argv[1]))


def reason(output):
    """DVC's first error line, without its prefix, help footer or repeated detail."""
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("ERROR:"):
            text = re.sub(r"^ERROR:\s*(unexpected error - |failed to (push|pull) data (to|from) the cloud - )?", "", line)
            return text
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("push", "pull"):
        sys.exit("usage: python tools/remote.py push|pull")
    action = sys.argv[1]
    remote = dvc("remote", "default").stdout.strip()
    if not remote:
        sys.exit("error: no default DVC remote: add one with `dvc remote add -d <name> <url>`")
    url = dvc("config", f"remote.{remote}.url").stdout.strip() or "?"
    result = dvc(action, "--run-cache")
    if result.returncode != 0:
        print(f"error: remote {remote!r} ({url}): {action} failed: {reason(result.stderr + result.stdout)}",
              file=sys.stderr)
        sys.exit(1)
    print(result.stdout.strip() or f"{action}: nothing to transfer", f"(remote {remote!r}, {url})")


if __name__ == "__main__":
    main()
