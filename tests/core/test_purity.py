"""The core is the pure ring: importing it must not pull in a reactor.

(twisted.logger, which the core logs through, brings the stdlib socket module
along via twisted.python; that is not a reactor and does no I/O by itself.)"""

import subprocess
import sys


def test_core_imports_no_twisted_internet():
    code = (
        "import sys\n"
        "import asttapi_server.core, asttapi_server.core.model, asttapi_server.core.grammar\n"
        "import asttapi_server.core.transitions, asttapi_server.core.causes, asttapi_server.core.constants\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('twisted.internet', 'asyncio')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
