"""First run without a config file: find the install and offer what was found."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from fovea_tui.config import (
    BackupSettings,
    Settings,
    VolumeSettings,
    render_toml,
    save_settings,
    settings_from_dict,
    user_config_path,
)
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.targets import LocationCheck, check_locations, suggest_backups_dir
from fovea_tui.errors import FoveaError
from fovea_tui.tui.typed import FoveaAppAccess
from fovea_tui.tui.widgets.confirm import ConfirmDialog

PROJECT_LABEL = "com.docker.compose.project"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
SERVICE_LABEL = "com.docker.compose.service"
DEFAULT_ENV = Path("/opt/fovea/.env")


@dataclass
class Discovery:
    engine: str = ""                                       # "" when Docker answered, else why not
    projects: dict[str, str] = field(default_factory=dict)  # project -> working dir
    env_files: list[str] = field(default_factory=list)
    volume_paths: list[str] = field(default_factory=list)
    has_postgres: dict[str, bool] = field(default_factory=dict)
    volume_of: dict[str, str] = field(default_factory=dict)  # project -> its backend's /videos mount


def discover(backend_service: str = "backend") -> Discovery:
    """Look at the Docker engine (if one answers) and the usual places. Never raises."""
    found = Discovery()
    try:
        from fovea_tui.engine.infra.stack import connect_docker

        client = connect_docker(timeout=5)
        containers = client.containers.list(all=True, filters={"label": PROJECT_LABEL})
    except FoveaError as exc:
        found.engine = str(exc)
        containers = []
    except Exception as exc:  # noqa: BLE001 - discovery is a convenience; say why and go on
        found.engine = f"{type(exc).__name__}: {exc}"
        containers = []
    for c in containers:
        labels = c.labels or {}
        project = labels.get(PROJECT_LABEL)
        if not project:
            continue
        found.projects.setdefault(project, labels.get(WORKDIR_LABEL, ""))
        service = labels.get(SERVICE_LABEL, "")
        if service == "postgres":
            found.has_postgres[project] = True
        if service == backend_service:
            for mount in c.attrs.get("Mounts") or []:
                if mount.get("Destination") == "/videos" and mount.get("Source"):
                    found.volume_of.setdefault(project, mount["Source"])
                    if mount["Source"] not in found.volume_paths:
                        found.volume_paths.append(mount["Source"])
    candidates = [Path(wd) / ".env" for wd in found.projects.values() if wd] + [DEFAULT_ENV]
    for path in candidates:
        if path.is_file() and str(path) not in found.env_files:
            found.env_files.append(str(path))
    # Fovea projects first: the ones with a postgres service, or named like it.
    found.projects = dict(sorted(found.projects.items(),
                                 key=lambda kv: (not found.has_postgres.get(kv[0]), "fovea" not in kv[0], kv[0])))
    return found


class Discovered(Message):
    def __init__(self, found: Discovery) -> None:
        super().__init__()
        self.found = found


class LocationsChecked(Message):
    """The engine's verdicts on the location fields; `then_save` carries the settings to save
    when every verdict is good."""

    def __init__(self, checks: list[LocationCheck], then_save: Settings | None = None) -> None:
        super().__init__()
        self.checks = checks
        self.then_save = then_save


# The location fields: config key -> (widget id, placeholder).
LOCATIONS = {
    "backups.dir": ("setup-backups", "/var/backups/fovea"),
    "backups.offsite": ("setup-offsite", "s3://bucket/fovea/backups/ or /mnt/other-disk/fovea"),
    "volume.target": ("setup-target", "s3://bucket/fovea/videos/ or /mnt/other-disk/videos"),
}


class SetupScreen(FoveaAppAccess, ModalScreen[None]):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Offers what discovery found; saving writes a config file (after showing it)."""

    AUTO_FOCUS = "#setup-save"  # Enter saves; skipping is a choice made on purpose
    BINDINGS = [Binding("escape", "skip", "Skip"), Binding("ctrl+s", "save", "Save", priority=True)]
    DEFAULT_CSS = """
    SetupScreen { align: center middle; }
    SetupScreen > Vertical {
        width: 90%; max-width: 100; height: 95%; max-height: 48;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    SetupScreen VerticalScroll { height: 1fr; }  /* the buttons below stay on screen at 80x24 */
    SetupScreen.-narrow > Vertical { width: 100%; }
    SetupScreen Label.key { padding-top: 1; text-style: bold; }
    SetupScreen .found { color: $text-muted; height: auto; }
    SetupScreen .found.-refused { color: $error; text-style: bold; }
    SetupScreen #setup-buttons { height: auto; align-horizontal: right; padding-top: 1; }
    SetupScreen #setup-buttons Button { margin-left: 1; }
    """

    def compose(self) -> ComposeResult:
        s: Settings = self.app.settings
        with Vertical() as box:
            box.border_title = ("First run: where is the Fovea install?" if s.source is None
                                else "Find the install again")
            yield Static(f"{self._where()} Looking for the install… "
                         f"Saving writes {escape(str(self.target()))}.", id="setup-intro")
            with VerticalScroll():
                yield Label("compose project", classes="key")
                yield Input(s.install.compose_project, id="setup-project")
                yield Static("", id="found-project", classes="found")
                yield Label("env file", classes="key")
                yield Input(s.install.env_file, id="setup-env")
                yield Static("", id="found-env", classes="found")
                yield Label("video volume path", classes="key")
                yield Input(s.volume.path, id="setup-volume")
                yield Static("", id="found-volume", classes="found")
                yield Label("database mode", classes="key")
                yield Select([("docker", "docker"), ("direct", "direct")], value=s.database.mode,
                             id="setup-mode", allow_blank=False)
                yield Label("backups directory (backups.dir)", classes="key")
                yield Input(s.backups.dir, id="setup-backups", placeholder=LOCATIONS["backups.dir"][1])
                yield Static("", id="setup-backups-check", classes="found")
                yield Label("off-site copies of the backups (backups.offsite)", classes="key")
                yield Input(s.backups.offsite, id="setup-offsite", placeholder=LOCATIONS["backups.offsite"][1])
                yield Static("", id="setup-offsite-check", classes="found")
                yield Label("copy of the videos (volume.target)", classes="key")
                yield Input(s.volume.target, id="setup-target", placeholder=LOCATIONS["volume.target"][1])
                yield Static("", id="setup-target-check", classes="found")
                yield Label("encryption of the off-site copies", classes="key")
                yield Static(escape("Encrypt them: generate an age key here (its public part goes into [encryption] "
                                    "recipients; keep a copy of the key away from this host)."), classes="found")
                yield Static("", id="setup-key", classes="found")
            with Horizontal(id="setup-buttons"):
                yield Button("Recover from off-site…", id="setup-recover", compact=True)
                yield Button("Generate a key", id="setup-keygen", compact=True)
                yield Button("Skip (esc)", id="setup-skip", compact=True)
                yield Button("Save… (ctrl+s)", id="setup-save", variant="primary", compact=True)

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = self.app.cursor_blink
        self.found = Discovery()
        self.run_discovery()
        self.check_fields()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in {wid for wid, _ in LOCATIONS.values()} or event.input.id == "setup-volume":
            self.check_fields()

    def _locations(self) -> Settings:
        """The location fields as settings, unvalidated: what the engine's checks read."""
        value = {key: self.query_one(f"#{wid}", Input).value.strip() for key, (wid, _) in LOCATIONS.items()}
        return Settings(backups=BackupSettings(dir=value["backups.dir"], offsite=value["backups.offsite"]),
                        volume=VolumeSettings(path=self.query_one("#setup-volume", Input).value.strip(),
                                              target=value["volume.target"]))

    def check_fields(self) -> None:
        self._check(self._locations())

    @work(thread=True, exclusive=True, group="locations", exit_on_error=False)
    def _check(self, settings: Settings) -> None:
        """Probing a directory can hang on a dead network mount: never on the UI thread."""
        self.post_message(LocationsChecked(check_locations(settings)))

    @work(thread=True, exclusive=True, group="save-check", exit_on_error=False)
    def _check_before_saving(self, new: Settings) -> None:
        """The same checks, apart: a field edited meanwhile must not cancel the save."""
        self.post_message(LocationsChecked(check_locations(new), new))

    def on_locations_checked(self, message: LocationsChecked) -> None:
        refused = [c for c in message.checks if not c.ok]
        for check in message.checks:
            line = self.query_one(f"#{LOCATIONS[check.key][0]}-check", Static)
            line.update(escape(check.verdict if check.ok else f"refused: {check.verdict}"))
            line.set_class(not check.ok, "-refused")
        if message.then_save is None:
            return
        if refused:
            first = refused[0]
            self.notify(f"{first.key}: {first.verdict}", title="Not saved", severity="error", timeout=15)
            self.query_one(f"#{LOCATIONS[first.key][0]}", Input).focus()
            return
        self._confirm_save(message.then_save)

    @work(thread=True, exclusive=True, group="discovery", exit_on_error=False)
    def run_discovery(self) -> None:
        self.post_message(Discovered(discover(self.app.settings.stack.backend_service)))

    def on_discovered(self, message: Discovered) -> None:
        found = self.found = message.found
        first = next(iter(found.projects), "")  # the project offered; the env file and volume are its own
        if found.projects:
            self.query_one("#setup-project", Input).value = first
            backups = self.query_one("#setup-backups", Input)
            if self.app.settings.source is None and backups.value == BackupSettings().dir:
                backups.value = suggest_backups_dir(first)
            self.query_one("#found-project", Static).update("found: " + ", ".join(found.projects))
        else:
            why = f" ({found.engine})" if found.engine else ""
            self.query_one("#found-project", Static).update(f"no compose project found{escape(why)}")
            self.query_one("#setup-mode", Select).value = "direct" if found.engine else "docker"
        if found.env_files:
            own = str(Path(found.projects[first]) / ".env") if found.projects.get(first) else ""
            self.query_one("#setup-env", Input).value = own if own in found.env_files else found.env_files[0]
            self.query_one("#found-env", Static).update("found: " + escape(", ".join(found.env_files)))
        else:
            self.query_one("#found-env", Static).update("no .env found beside a compose project or in /opt/fovea")
        if found.volume_paths:
            self.query_one("#setup-volume", Input).value = found.volume_of.get(first, found.volume_paths[0])
            self.query_one("#found-volume", Static).update(
                "the backend's /videos mount: " + escape(", ".join(found.volume_paths)))
        else:
            self.query_one("#found-volume", Static).update("no backend container with a /videos mount found")
        self.query_one("#setup-intro", Static).update(
            f"{self._where()} This is what fovea-tui found; adjust and save to {escape(str(self.target()))}.")

    def _where(self) -> str:
        source = self.app.settings.source
        if source is None:
            return "No config file was found, so fovea-tui runs on defaults."
        return f"The settings come from {escape(str(source))}."

    def target(self) -> Path:
        """The loaded config file, or (first run) the user's config path."""
        return Path(self.app.settings.source or user_config_path())

    recipient: str = ""
    identity_file: str = ""

    def proposed(self) -> Settings:
        s: Settings = self.app.settings
        data = s.to_toml_dict()
        if self.recipient:
            data["encryption"] = {"recipients": [self.recipient], "identity_file": self.identity_file}
        data["install"]["compose_project"] = self.query_one("#setup-project", Input).value.strip()
        data["install"]["env_file"] = self.query_one("#setup-env", Input).value.strip()
        data["volume"]["path"] = self.query_one("#setup-volume", Input).value.strip()
        data["database"]["mode"] = self.query_one("#setup-mode", Select).value
        data["backups"]["dir"] = self.query_one("#setup-backups", Input).value.strip()
        data["backups"]["offsite"] = self.query_one("#setup-offsite", Input).value.strip()
        data["volume"]["target"] = self.query_one("#setup-target", Input).value.strip()
        return settings_from_dict(data)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "setup-skip":
            self.action_skip()
        elif event.button.id == "setup-recover":
            from fovea_tui.tui.screens.recover import RecoverScreen

            self.dismiss(None)
            self.app.push_screen(RecoverScreen())
        elif event.button.id == "setup-keygen":
            self.action_keygen()
        elif event.button.id == "setup-save":
            self.action_save()

    def action_keygen(self) -> None:
        """A new age identity beside the user config; saved into [encryption] with the rest."""
        from fovea_tui.config import default_identity_path
        from fovea_tui.engine.backups.age_keys import keygen

        try:
            made = keygen(default_identity_path())
        except (FoveaError, OSError) as exc:
            self.notify(str(exc), title="No key made", severity="error")
            return
        self.recipient, self.identity_file = made.recipient, str(made.path)
        self.query_one("#setup-key", Static).update(escape(f"key written to {made.path} (0600); recipient "
                                                           f"{made.recipient}. " + " ".join(made.advice[1:2])))
        self.query_one("#setup-keygen", Button).disabled = True

    def action_skip(self) -> None:
        """Skipping a first run that found an install asks first: it leaves built-in defaults."""
        if self.app.settings.source is not None or not self.found.projects:
            self.dismiss(None)
            return
        found = ", ".join(self.found.projects)
        defaults = Settings()

        def decided(skip: bool | None) -> None:
            if skip:
                self.dismiss(None)

        self.app.push_screen(ConfirmDialog(
            f"Skip setup? Nothing is saved and fovea-tui runs on its built-in defaults: compose project "
            f"{defaults.install.compose_project!r}, backups in {defaults.backups.dir}. This host has {found}, "
            f"so the dashboard would alert about a project that does not exist here. "
            f"Setup comes back with the palette (ctrl+p, \"Setup\").",
            confirm_label="Skip", cancel_label="Back to setup", title="Skip setup"), decided)

    def action_save(self) -> None:
        """Check the locations in the engine (off the UI thread), then show the file to write."""
        try:
            new = self.proposed()
        except FoveaError as exc:
            self.notify(str(exc), title="Not saved", severity="error")
            return
        self._check_before_saving(new)

    def _confirm_save(self, new: Settings) -> None:
        target = self.target()
        text = render_toml(new)
        diff = "".join(f"+{line}\n" for line in text.splitlines())

        def confirmed(ok: bool | None) -> None:
            if not ok:
                return
            try:
                save_settings(new, target)
            except (FoveaError, OSError) as exc:
                self.notify(str(exc), title="Not saved", severity="error")
                return
            audit.settings_saved(None, new, target)
            self.app.apply_settings(new)
            self.notify(f"Saved to {target}", title="Setup")
            self.dismiss(None)

        self.app.push_screen(ConfirmDialog(f"{'Overwrite' if target.exists() else 'Create'} {target}?", diff, confirm_label="Save",
                                           title="Save settings"), confirmed)


__all__ = ["SetupScreen", "discover", "Discovery"]
