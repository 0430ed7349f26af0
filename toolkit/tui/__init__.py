"""The terminal dashboard (Textual). The only package that imports Textual.

    app.py           DashboardApp: modes (installations, users, audit), database health, screenshots
    source.py        DataSource: the services a session reads and writes through (no widgets)
    workers.py       DataScreen: every database call in a thread worker, results back as messages
    messages.py      the messages workers post
    filters.py       the `/` filter language (pure)
    cells.py         values -> rich Text (never markup), timestamps, masks
    config_view.py   inspection.FieldView -> config table cells, secrets masked (pure)
    screens/         one module per screen, plus the modal dialogs
    widgets/         top bar, database banner, overview strip, paged table, revealed values
    dashboard.tcss   the stylesheet
"""

from .app import DashboardApp
from .source import DataSource

__all__ = ["DashboardApp", "DataSource"]
