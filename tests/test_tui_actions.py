"""The dashboard's audit view and its --write actions, driven by Pilot on seeded SQLite."""

from __future__ import annotations

from test_browse_seed import SECRET_STRIPE, keyring
from test_tui import SIZE, make_app, open_details, run_async, screen_text, seeded, settings, settle  # noqa: F401 (fixtures)

from toolkit import inspection
from toolkit.tui.screens.audit import AuditScreen
from toolkit.tui.screens.installation import InstallationScreen
from toolkit.tui.screens.installations import InstallationsScreen
from toolkit.tui.screens.modals import ChoiceScreen, ConfirmScreen, InputScreen
from toolkit.tui.widgets import PageTable


async def run_audit(app, pilot):
    await pilot.press("a")
    await settle(pilot)
    assert isinstance(app.screen, AuditScreen)
    await pilot.press("r")
    await settle(pilot)
    assert app.report is not None


@run_async
async def test_audit_runs_in_a_worker_and_groups_findings(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run_audit(app, pilot)
        codes = {f.code for f in app.report.findings}
        assert {"config.not-object", "secret.malformed", "app.unknown"} <= codes
        tree = app.screen.query_one("#findings")
        labels = [str(node.label) for node in tree.root.children]
        assert any("secret.malformed" in label for label in labels)
        assert "findings in" in screen_text(app)
        assert not app.screen.query_one("#progress").display  # the bar is gone when done


@run_async
async def test_enter_on_a_finding_opens_its_installation(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run_audit(app, pilot)
        tree = app.screen.query_one("#findings")
        code_node = next(n for n in tree.root.children if "secret.malformed" in str(n.label))
        code_node.expand()
        app_node = code_node.children[0]
        app_node.expand()
        await pilot.pause()
        leaf = app_node.children[0]
        tree.move_cursor(leaf)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen) and app.screen.installation_id == 4
        assert "secret.malformed" in screen_text(app)  # the finding is listed on the installation


@run_async
async def test_f_lists_a_codes_installations_and_the_list_marks_findings(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await run_audit(app, pilot)
        tree = app.screen.query_one("#findings")
        code_node = next(n for n in tree.root.children if "config.not-object" in str(n.label))
        tree.move_cursor(code_node)
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)
        table = app.screen.query_one(PageTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["3"]
        assert "●" in str(table.get_row_at(0)[4])
        shown = screen_text(app)
        assert "findings: ● " in shown  # the overview strip counts findings by severity
        # The filter line accepts codes too.
        await pilot.press("slash", "ctrl+u", *"code:any", "enter")
        await settle(pilot)
        ids = {f.installation_id for f in app.report.findings if f.installation_id is not None}
        assert table.row_count == min(len(ids), 100)


@run_async
async def test_code_filter_before_an_audit_explains(seeded, settings):
    app = make_app(seeded, settings)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"code:secret.malformed", "enter")
        await settle(pilot)
        assert any("Run the audit first" in n.message for n in app._notifications)


async def open_write(app, pilot, installation_id):
    await open_details(app, pilot, installation_id)


def stored(seeded, installation_id):
    with seeded.connection_context():
        return inspection.load_installation(seeded, None, None, installation_id).as_read


@run_async
async def test_change_status_with_confirmation(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 2)
        assert "WRITE" in screen_text(app)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert stored(seeded, 2).status == "configured"
        assert "configured" in str(app.screen.query_one("#details").render())


@run_async
async def test_edit_a_field_and_cancel_writes_nothing(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 1)
        await pilot.press("down", "e")  # Region
        await pilot.pause()
        assert isinstance(app.screen, InputScreen)
        await pilot.press("ctrl+u", "u", "s", "enter")
        await pilot.pause()
        await pilot.press("n")
        await settle(pilot)
        assert stored(seeded, 1).config["region"] == "eu"
        await pilot.press("e", "ctrl+u", "u", "s", "enter", "y")
        await settle(pilot)
        assert stored(seeded, 1).config["region"] == "us"


@run_async
async def test_an_invalid_edit_is_validated_before_the_confirmation_which_refuses_it(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 1)
        await pilot.press("down", "e", "ctrl+u", *"mars", "enter")
        await settle(pilot)
        # The confirmation comes up with the config service's problems, before any answer.
        assert isinstance(app.screen, ConfirmScreen) and app.screen.problems
        shown = screen_text(app)
        assert "Cannot be saved" in shown and "region:" in shown and "[field.invalid]" in shown
        assert "Save (y)" not in shown and "Back (n)" in shown
        await pilot.press("y")  # refused: nothing to confirm
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert stored(seeded, 1).config["region"] == "eu"
        await pilot.press("enter")  # the only button: Back
        await settle(pilot)
        assert isinstance(app.screen, InstallationScreen)
        assert stored(seeded, 1).config["region"] == "eu"


@run_async
async def test_set_a_secret_through_a_masked_input(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 1)
        await pilot.press("k")
        await pilot.pause()
        assert isinstance(app.screen, InputScreen) and app.screen.query_one("#value").password
        await pilot.press(*"sk_live_NEW_VALUE_1234", "enter")
        await pilot.pause()
        assert "sk_live_NEW_VALUE_1234" not in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        value = stored(seeded, 1).config["apiKey"]
        assert value != SECRET_STRIPE and keyring().decrypt(value).secret.reveal() == "sk_live_NEW_VALUE_1234"


@run_async
async def test_uninstall_with_confirmation(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 5)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "This deletes installation 5 and its config." in app.screen.prompt.plain
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, InstallationsScreen)
        table = app.screen.query_one(PageTable)
        assert "5" not in [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


@run_async
async def test_a_concurrent_change_is_refused_not_overwritten(seeded, settings):
    app = make_app(seeded, settings, write=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_write(app, pilot, 1)
        with seeded.connection_context():
            seeded.execute_sql("UPDATE app_installations SET status = 'installed' WHERE id = 1")
        await pilot.press("down", "e", "ctrl+u", "u", "s", "enter", "y")
        await settle(pilot)
        assert stored(seeded, 1).config["region"] == "eu"
        assert any(n.title == "Not saved" for n in app._notifications)
