"""The ``test_interp_*`` files run only where ``TRITON_INTERPRET=1`` was set before Triton was
imported: :mod:`test_under_interpreter` starts such a pytest process. Elsewhere they are not
collected, so the interpreter never leaks into the rest of the suite."""

import os

collect_ignore_glob = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["test_interp_*.py"]
