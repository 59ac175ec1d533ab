"""Sharing commands: pull, push, login, logout (registries); remote, fetch, push --git."""

from __future__ import annotations

import sys

import click

from layerctl.cli.common import open_store
from layerctl.errors import BadInput, Conflict


def _tls_options(f: object) -> object:
    f = click.option(
        "--ca-file",
        envvar="LAYERCTL_CA_FILE",
        metavar="PEM",
        help="Trust this CA certificate bundle for the registry (env LAYERCTL_CA_FILE).",
    )(f)
    return click.option(
        "--insecure",
        is_flag=True,
        help="Allow plain http and unverified TLS (loopback registries fall back to http anyway).",
    )(f)


def _tls(insecure: bool, ca_file: str | None) -> object:
    from layerctl.oci.registry.transport import TlsOptions, quiet_insecure_warnings

    if insecure:
        quiet_insecure_warnings()
    return TlsOptions(insecure=insecure, ca_file=ca_file)


class _Printer:
    """Docker-style progress lines: `<short id>: <status>`, a live byte count and rate
    on a tty."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self.live = False
        self.started: dict[str, float] = {}  # id -> when its transfer began

    def __call__(self, event: object) -> None:
        if self.quiet:
            return
        from layerctl.cli.common import human_size

        if event.id is None:
            self._end_live()
            click.echo(event.status)
            return
        if event.total and event.status in ("Downloading", "Pushing"):
            if not self.tty:
                if event.current == 0:
                    click.echo(f"{event.id}: {event.status}")
                return
            import time

            from layerctl.oci.events import rate

            now = time.monotonic()
            began = self.started.setdefault(event.id, now)
            size = f"{human_size(event.current)}/{human_size(event.total)}"
            speed = rate(event.current, now - began)
            sys.stdout.write(f"\r{event.id}: {event.status} {size} {speed}\x1b[K")
            sys.stdout.flush()
            self.live = True
            return
        self._end_live()
        click.echo(f"{event.id}: {event.status}")

    def _end_live(self) -> None:
        if self.live:
            sys.stdout.write("\n")
            self.live = False


# -- registries -----------------------------------------------------------------------


@click.command("pull")
@click.argument("reference")
@click.option(
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="Platform to pick from a multi-arch image (default: this host's).",
)
@click.option(
    "--max-concurrent-downloads",
    "max_downloads",
    type=int,
    default=3,
    show_default=True,
    metavar="N",
    help="Download at most N layers at once.",
)
@_tls_options
@click.option("-q", "--quiet", is_flag=True, help="Print only the image reference.")
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    reference: str,
    platform: str | None,
    max_downloads: int,
    insecure: bool,
    ca_file: str | None,
    quiet: bool,
) -> None:
    """Pull REFERENCE ([registry/]name[:tag|@digest]) from a registry."""
    from layerctl.oci.registry.pull import pull
    from layerctl.oci.registry.reference import parse_reference

    ref = parse_reference(reference)
    store = open_store(ctx)
    pull(store, ref, _tls(insecure, ca_file), platform=platform, progress=_Printer(quiet),
         max_downloads=max_downloads)
    click.echo(str(ref))


@click.command("push")
@click.argument("image", required=False)
@click.argument("destination", required=False)
@click.option("--git", "git_remote", metavar="REMOTE", help="Push to a git remote instead.")
@click.option("-f", "--force", is_flag=True, help="git: also update tags that moved elsewhere.")
@_tls_options
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_context
def push_cmd(
    ctx: click.Context,
    image: str | None,
    destination: str | None,
    git_remote: str | None,
    force: bool,
    insecure: bool,
    ca_file: str | None,
    quiet: bool,
) -> None:
    """Push IMAGE to a registry (as DESTINATION, default IMAGE's own name), or images
    with their layer history to a git remote (--git REMOTE [IMAGE]: all images if none)."""
    if git_remote is not None:
        if destination is not None:
            raise BadInput("push --git takes one IMAGE at most")
        _git_push(ctx, git_remote, image, force, quiet)
        return
    if image is None:
        raise BadInput("push: missing IMAGE (or --git REMOTE)")
    from layerctl.images import parse_name
    from layerctl.oci.registry.push import push
    from layerctl.oci.registry.reference import parse_reference

    name = parse_name(image)
    ref = parse_reference(destination or str(name))
    store = open_store(ctx)
    result = push(store, name, ref, _tls(insecure, ca_file), progress=_Printer(quiet))
    for layer_id, why in result.broken.items():
        click.echo(f"layerctl: warning: layer {layer_id[:12]}: its kept original tar is "
                   f"damaged ({why}); pushed its changeset instead (another DiffID; run "
                   "`layerctl fsck`)", err=True)


@click.command("login")
@click.argument("server", required=False, default="docker.io")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_tls_options
def login_cmd(
    server: str,
    username: str | None,
    password: str | None,
    password_stdin: bool,
    insecure: bool,
    ca_file: str | None,
) -> None:
    """Log in to a registry (default docker.io); the credentials are checked first."""
    from layerctl.oci.registry.auth import Credentials, store_credentials
    from layerctl.oci.registry.client import check_login

    if password_stdin:
        if password is not None:
            raise BadInput("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    interactive = sys.stdin.isatty()
    if not username:
        if not interactive:
            raise BadInput("login: a username is needed (-u)")
        username = click.prompt("Username")
    if password is None:
        if not interactive:
            raise BadInput("login: a password is needed (-p or --password-stdin)")
        password = click.prompt("Password", hide_input=True)
    if not password:
        raise BadInput("login: empty password")
    creds = Credentials(username, password)
    check_login(server, creds, _tls(insecure, ca_file))
    store_credentials(server, creds)
    click.echo("Login Succeeded")


@click.command("logout")
@click.argument("server", required=False, default="docker.io")
def logout_cmd(server: str) -> None:
    """Forget the credentials stored for a registry (default docker.io)."""
    from layerctl.errors import NotFound
    from layerctl.oci.registry.auth import remove_credentials
    from layerctl.oci.registry.reference import registry_key

    host = registry_key(server)
    if not remove_credentials(server):
        raise NotFound(f"not logged in to {host}")
    click.echo(f"Removing login credentials for {host}")


# -- git remotes -------------------------------------------------------------------------


@click.group("remote", invoke_without_command=True)
@click.option("-v", "--verbose", is_flag=True, help="Show URLs.")
@click.pass_context
def remote_cmd(ctx: click.Context, verbose: bool) -> None:
    """Manage git remotes (plain git remotes of the store's repository)."""
    if ctx.invoked_subcommand is not None:
        return
    from layerctl.remotes import list_remotes

    for name, url in list_remotes(open_store(ctx)).items():
        if verbose:
            click.echo(f"{name}\t{url} (fetch)")
            click.echo(f"{name}\t{url} (push)")
        else:
            click.echo(name)


@remote_cmd.command("add")
@click.argument("name")
@click.argument("url")
@click.pass_context
def remote_add_cmd(ctx: click.Context, name: str, url: str) -> None:
    """Add remote NAME at URL (path, file://, git://, http(s)://, ssh)."""
    from layerctl.remotes import add_remote

    add_remote(open_store(ctx), name, url)


@remote_cmd.command("remove")
@click.argument("name")
@click.pass_context
def remote_remove_cmd(ctx: click.Context, name: str) -> None:
    """Remove remote NAME."""
    from layerctl.remotes import remove_remote

    remove_remote(open_store(ctx), name)


remote_cmd.add_command(remote_remove_cmd, "rm")


def _show_updates(updates: list, url: str, pushing: bool, quiet: bool) -> None:
    from layerctl.remotes import FAILED, FORCED, FORWARD, NEW, REJECTED, UP_TO_DATE

    if not quiet:
        click.echo(f"{'To' if pushing else 'From'} {url}")
    failed = 0
    for u in updates:
        name = str(u.image)
        if u.status == NEW:
            line = f" * [new image]         {name}"
        elif u.status == FORWARD:
            line = f"   {u.old[:7]}..{u.new[:7]}  {name}"
        elif u.status == FORCED:
            line = f" + {u.old[:7]}...{u.new[:7]} {name} (forced update)"
        elif u.status == UP_TO_DATE:
            line = f" = [up to date]        {name}"
        else:
            failed += 1
            tag = "[rejected]" if u.status == REJECTED else "[remote rejected]"
            line = f" ! {tag:<19} {name} ({u.reason})"
        if not quiet or u.status in (REJECTED, FAILED):
            click.echo(line)
    if failed:
        raise Conflict(f"{failed} image(s) not {'pushed' if pushing else 'fetched'}")


def _git_push(ctx: click.Context, remote: str, image: str | None, force: bool, quiet: bool) -> None:
    from layerctl.images import parse_name
    from layerctl.remotes import push, remote_url

    store = open_store(ctx)
    url = remote_url(store, remote)
    images = [parse_name(image)] if image else None
    _show_updates(push(store, url, images, force), url, True, quiet)


@click.command("fetch")
@click.argument("remote")
@click.argument("images", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="Also update tags that moved elsewhere.")
@click.option("-q", "--quiet", is_flag=True, help="Only report problems.")
@click.pass_context
def fetch_cmd(
    ctx: click.Context, remote: str, images: tuple[str, ...], force: bool, quiet: bool
) -> None:
    """Fetch images (all, or IMAGES) and their layers from git remote REMOTE."""
    from layerctl.images import parse_name
    from layerctl.remotes import fetch, remote_url

    store = open_store(ctx)
    url = remote_url(store, remote)
    wanted = [parse_name(i) for i in images] or None
    _show_updates(fetch(store, url, wanted, force), url, False, quiet)
