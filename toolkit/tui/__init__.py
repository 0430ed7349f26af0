"""The terminal dashboard (Textual). The only package that imports Textual.

    app.py           DashboardApp: modes (installations, users, audit), database health, screenshots
    source.py        DataSource: the services a session reads and writes through (no widgets)
    workers.py       DataScreen: every database call in a thread worker, results back as messages
    messages.py      the messages workers post
    filters.py       the `/` filter language (pure)
    cells.py         values -> rich Text (never markup), timestamps, masks
    config_view.py   inspection.FieldView -> config table cells and the raw JSON view, secrets masked (pure)
    revealed.py      the revealed secrets of the installation screen (the one holder of plaintexts)
    clipboard.py     copies: OSC 52 and a file
    screens/         one module per screen, plus the modal dialogs
    widgets/         top bar, database banner, overview strip, paged table, footer
    dashboard.tcss   the stylesheet
"""

from .app import DashboardApp
from .source import DataSource

__all__ = ["DashboardApp", "DataSource"]
