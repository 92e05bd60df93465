"""Browse etcd's v3 keys and Docker's v2 tree (/docker) as a tree; JSON values shown pretty-printed."""
from __future__ import annotations

from rich.markup import escape
from rich.syntax import Syntax
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static, Tree
from textual.widgets.tree import TreeNode

from core.model import KeyEntry
from tui.console import console
from tui.panes.base import describe_error

SOURCES = (("v2", "Docker's store (etcd v2 API)"), ("v3", "etcd v3 keys"))


class KeysLoaded(Message):
    """One key space arrived (``keys``) or failed (``error``)."""

    def __init__(self, source: str, keys: list[KeyEntry] | None, error: str | None = None) -> None:
        super().__init__()
        self.source = source  #: "v2" or "v3"
        self.keys = keys      #: its entries, None on failure
        self.error = error    #: why it could not be read


def key_parts(key: str) -> list[str]:
    return [p for p in key.split("/") if p] or [key]


class KeyBrowserScreen(ModalScreen[None]):
    """Both key spaces as one tree; highlighting a key shows its value."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="keys.close"),
                Binding("r", "reload", "Reload", id="keys.reload")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="keys-dialog"):
            yield Static("[b]Key browser[/b]: Docker's classic store lives in the v2 tree under /docker",
                         classes="dialog-title")
            with Horizontal():
                tree: Tree[KeyEntry | None] = Tree("etcd", id="key-tree")
                tree.show_root = False
                yield tree
                with VerticalScroll(id="key-value-box"):
                    yield Static("select a key", id="key-value")

    def __init__(self) -> None:
        super().__init__(classes="modal")
        self.shown: KeyEntry | None = None  #: the key whose value is shown

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one(Tree).focus()

    def action_reload(self) -> None:
        tree = self.query_one(Tree)
        tree.clear()
        for _source, label in SOURCES:
            tree.root.add(f"{label}  [dim]loading…[/]", data=None, expand=True)
        for source, _ in SOURCES:
            self.load(source)

    @work(group="keys", exit_on_error=False)
    async def load(self, source: str) -> None:
        try:
            keys = await console(self).service.etcd_keys(source)
        except Exception as e:  # noqa: BLE001 - shown in the tree
            self.post_message(KeysLoaded(source, None, describe_error(e)))
            return
        self.post_message(KeysLoaded(source, keys))

    def on_keys_loaded(self, msg: KeysLoaded) -> None:
        idx = [s for s, _ in SOURCES].index(msg.source)
        top = self.query_one(Tree).root.children[idx]
        label = SOURCES[idx][1]
        if msg.keys is None:
            top.set_label(Text.assemble(label + "  ", ("✗ " + (msg.error or ""), "bold red")))
            return
        top.set_label(Text.assemble(label + "  ", (f"{sum(not k.is_dir for k in msg.keys)} keys", "dim")))
        nodes: dict[tuple[str, ...], TreeNode[KeyEntry | None]] = {(): top}
        for entry in sorted(msg.keys, key=lambda k: key_parts(k.key)):
            parts = key_parts(entry.key)
            for depth in range(1, len(parts) + 1):
                path = tuple(parts[:depth])
                if path in nodes:
                    continue
                parent = nodes[path[:-1]]
                leaf = depth == len(parts) and not entry.is_dir
                data = entry if depth == len(parts) else None
                name = Text(path[-1])            # etcd's key names: never markup
                nodes[path] = parent.add_leaf(name, data=data) if leaf else parent.add(name, data=data,
                                                                                        expand=depth < 3)

    @on(Tree.NodeHighlighted)
    def _show(self, event: Tree.NodeHighlighted) -> None:
        entry = self.shown = event.node.data
        box = self.query_one("#key-value", Static)
        if entry is None:
            box.update(Text(str(event.node.label), style="dim"))
            return
        head = Text.assemble((entry.key, "bold"), (f"  ({entry.source})", "dim"), "\n")
        value = entry.value or ""
        if entry.is_dir:
            box.update(Text.assemble(head, ("directory", "dim")))
        elif value.lstrip().startswith(("{", "[")):
            box.update(Syntax(value, "json", word_wrap=True, theme="ansi_dark", background_color="default"))
            self.query_one("#key-value-box").border_title = escape(f"{entry.key} ({entry.source})")  # a key name: never markup
            return
        else:
            box.update(Text.assemble(head, value))
        self.query_one("#key-value-box").border_title = escape(f"{entry.key} ({entry.source})")  # a key name: never markup

    def action_close(self) -> None:
        self.dismiss(None)
