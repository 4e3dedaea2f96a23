"""inspector as a plain mitmproxy addon: the same capture format, without `inspector record`.

    mitmdump -s addons/inspector_addon.py \
        --set inspector_base_url=https://gateway.example --set inspector_output=capture.yaml \
        --set connection_strategy=lazy

Secrets are recognised from mitmdump's own environment (e.g. ANTHROPIC_API_KEY).
All the logic lives in the `inspector` package; this file only hands mitmproxy the addon.
"""

import sys
from pathlib import Path

try:
    from inspector.capture import Recorder
except ImportError:  # running from a checkout without `pip install`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from inspector.capture import Recorder

addons = [Recorder()]
