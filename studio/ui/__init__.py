"""The studio window: a Gradio Blocks app, one module per tab. It talks to `Studio` only."""

import os

# Before Gradio is imported anywhere below: no usage reports leave this machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
