"""The dashboard's own widgets (one concern each)."""

from .banner import DatabaseBanner
from .footer import StableFooter
from .overview import OverviewStrip
from .page_table import Column, PageTable
from .topbar import TopBar

__all__ = ["Column", "DatabaseBanner", "OverviewStrip", "PageTable", "StableFooter", "TopBar"]
