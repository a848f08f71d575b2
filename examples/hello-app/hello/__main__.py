"""`python3 -m hello`: run the web application."""

import os

from hello.app import serve

serve(port=int(os.environ.get("PORT", "8000")))
