"""A Footer that rebuilds only when the keys it shows change.

Textual's Footer recomposes (unmounts and mounts a widget per key, restyling each) on every
bindings signal: each focus change, each reactive with `bindings=True`. On the lists that is
~20 widgets rebuilt when the filter line opens or closes, competing with the new rows for the
same frame. Most of those signals change nothing the footer shows, so they are skipped.
"""

from __future__ import annotations

from textual.widgets import Footer


class StableFooter(Footer):
    _shown: tuple | None = None

    def _visible_keys(self, screen) -> tuple:
        """What compose() would show: the key, description and enabled state of each shown binding."""
        return tuple(
            (binding.key, binding.action, binding.description, enabled, tooltip)
            for (_, binding, enabled, tooltip) in screen.active_bindings.values()
            if binding.show
        )

    def compose(self):
        if self._bindings_ready:
            self._shown = self._visible_keys(self.screen)
        yield from super().compose()

    def bindings_changed(self, screen) -> None:
        if self._shown is not None and self.is_attached and screen is self.screen:
            visible = self._visible_keys(screen)
            if visible == self._shown:
                return  # nothing the footer shows changed (or a rebuild for it is already queued)
            if screen.app.app_focus:
                self._shown = visible  # the rebuild queued below shows these: one rebuild, not one per signal
        super().bindings_changed(screen)
