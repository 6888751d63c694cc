"""Desktop life: the launcher behind a double-click, the tray icon, one instance, the app window, logs.

Everything here only calls the `Studio` facade; nothing reaches into the pool or the store.
"""
