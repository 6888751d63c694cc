"""Workers on other machines through Ray (optional: `pip install 'zaoxiang-studio[cluster]'`).

Nothing here is imported unless `--workers` names `ray`: the studio itself never needs Ray.
"""
