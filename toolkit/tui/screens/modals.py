"""The dialogs: confirm (or refuse, showing why), type a value (masked for secrets), pick
one of a few choices, read a text.

Prompts are `Text`, never markup: they quote data (field labels, emails) verbatim.
Inputs never blink (stable snapshots).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList


class DashboardModal(ModalScreen):
    """A dialog over a screen: the screen below is not 'left' (revealed values stay)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(DashboardModal):
    """Yes or no. With `problems` (what the service would refuse) it shows them and cannot be
    confirmed: only Back, and the answer is always no."""

    BINDINGS = [Binding("y", "confirm", "Yes"), Binding("n", "cancel", "No")]

    def __init__(self, prompt: str | Text, confirm: str = "Yes", *, danger: bool = False,
                 problems: list[str] | None = None):
        super().__init__()
        self.prompt = prompt if isinstance(prompt, Text) else Text(prompt)
        self.confirm_label = confirm
        self.danger = danger
        self.problems = list(problems or [])

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.prompt, id="prompt")
            if self.problems:
                refused = Text("Cannot be saved — the config service refuses it:", style="bold red")
                for problem in self.problems:
                    refused.append(f"\n  • {problem}", style="red")
                yield Label(refused, id="problems")
            with Horizontal(id="buttons"):
                if not self.problems:
                    yield Button(f"{self.confirm_label} (y)", variant="error" if self.danger else "primary", id="confirm")
                yield Button("Back (n)" if self.problems else "Cancel (n)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # enter on an unconsidered dialog does nothing harmful

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm" and not self.problems)

    def action_confirm(self) -> None:
        if self.problems:
            self.app.bell()
            return
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class InputScreen(DashboardModal):
    def __init__(self, prompt: str | Text, value: str = "", *, password: bool = False, placeholder: str = ""):
        super().__init__()
        self.prompt = prompt if isinstance(prompt, Text) else Text(prompt)
        self.value = value
        self.password = password
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.prompt, id="prompt")
            field = Input(self.value, password=self.password, placeholder=self.placeholder, id="value")
            field.cursor_blink = False
            yield field
            yield Label(Text("enter to continue · escape to cancel", style="dim"))

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)


class ChoiceScreen(DashboardModal):
    def __init__(self, prompt: str | Text, choices: list[str], current: str | None = None):
        super().__init__()
        self.prompt = prompt if isinstance(prompt, Text) else Text(prompt)
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.prompt, id="prompt")
            yield OptionList(*[Text(c) for c in self.choices], id="choices")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        if self.current in self.choices:
            options.highlighted = self.choices.index(self.current)
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.choices[event.option_index])


class TextScreen(DashboardModal):
    """A text to read (and scroll): escape or q closes it."""

    BINDINGS = [Binding("q", "cancel", "Close")]

    def __init__(self, title: Text, body: Text):
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="text-dialog"):
            yield Label(self.title_text, id="prompt")
            with VerticalScroll(id="text-body"):
                yield Label(self.body, id="text")
            yield Label(Text("escape or q closes", style="dim"))

    def on_mount(self) -> None:
        self.query_one("#text-body").focus()
