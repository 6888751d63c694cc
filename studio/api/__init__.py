"""Other programs' languages on the window's own server: OpenAI's images API, MCP, API keys.

Everything here goes through `Studio` (submit, wait, events, history), so requests from scripts and
agents queue with the window's and land in the same history, with origin `api`.
"""
