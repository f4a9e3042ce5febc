"""Run one packed Globus Compute task with the endpoint's own task runner (LocalExecutor).

`python -m relay.local_endpoint TASK_ID RUN_DIR` reads a messagepack `Task` on stdin and
writes the packed `Result` to stdout, as an endpoint worker process would hand it back.
"""

from __future__ import annotations

import contextlib
import sys
import uuid


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: python -m relay.local_endpoint TASK_ID RUN_DIR", file=sys.stderr)
        return 2
    from globus_compute_endpoint.engines.helper import execute_task

    body = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    # The task may print; keep its output off the channel that carries the result.
    with contextlib.redirect_stdout(sys.stderr):
        packed = execute_task(body, uuid.UUID(sys.argv[1]), None, run_dir=sys.argv[2])
    out.write(packed)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
