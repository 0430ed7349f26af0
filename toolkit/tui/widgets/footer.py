"""A Footer that rebuilds only when the keys it shows change.

Textual's Footer recomposes (unmounts and mounts a widget per key, restyling each) on every
bindings signal: each focus change, each reactive with `bindings=True`. On the lists that is
~20 widgets rebuilt when the filter line opens or closes, competing with the new rows for the
same frame. Most of those signals change nothing the footer shows, so they are skipped.

Textual lists the focused widget's keys first and the app's last, so at 80 columns the
footer cut off Users, Audit and Quit. Here the navigation keys come first (i, u, a, /, q, ?),
then the screen's own; what does not fit is still under `?` and in the palette.
"""

from __future__ import annotations

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

# The actions an operator needs on every screen, in the order the footer shows them.
NAVIGATION = ("switch_mode('installations')", "switch_mode('users')", "switch_mode('audit')",
              "filter", "back", "quit", "toggle_help")


def _rank(binding) -> int:
    return NAVIGATION.index(binding.action) if binding.action in NAVIGATION else len(NAVIGATION)


class StableFooter(Footer):
    _shown: tuple | None = None

    @staticmethod
    def _ordered(screen) -> list:
        """The shown bindings, one per action, navigation first (a stable sort keeps the rest's order)."""
        seen, shown = set(), []
        for (_, binding, enabled, tooltip) in screen.active_bindings.values():
            if binding.show and binding.action not in seen:
                seen.add(binding.action)
                shown.append((binding, enabled, tooltip))
        return sorted(shown, key=lambda item: _rank(item[0]))

    def _visible_keys(self, screen) -> tuple:
        """What compose() shows: the key, description and enabled state of each shown binding."""
        return tuple((b.key, b.action, b.description, enabled, tooltip) for b, enabled, tooltip in self._ordered(screen))

    def compose(self):
        if not self._bindings_ready:
            return
        screen = self.screen
        self._shown = self._visible_keys(screen)
        ordered = self._ordered(screen)
        self.styles.grid_size_columns = len(ordered)
        for binding, enabled, tooltip in ordered:
            yield FooterKey(
                binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                disabled=not enabled, tooltip=tooltip,
            ).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            entry = screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if entry is not None:
                _node, binding, enabled, tooltip = entry
                yield FooterKey(
                    binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                    classes="-command-palette", disabled=not enabled, tooltip=binding.tooltip or binding.description,
                )

    def bindings_changed(self, screen) -> None:
        if self._shown is not None and self.is_attached and screen is self.screen:
            visible = self._visible_keys(screen)
            if visible == self._shown:
                return  # nothing the footer shows changed (or a rebuild for it is already queued)
            if screen.app.app_focus:
                self._shown = visible  # the rebuild queued below shows these: one rebuild, not one per signal
        super().bindings_changed(screen)
