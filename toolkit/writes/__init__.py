"""Every write to `app_installations`, through one compare-and-swap seam (db.installations):

    configs.py   the config service: install, update, set status, uninstall — validated first
    rewrite.py   the batched rewrite loop rotation and repairs share (pages, retries, workers)
    repair.py    repairs of mechanical audit findings (`toolkit repair --fix CODE`)
"""
