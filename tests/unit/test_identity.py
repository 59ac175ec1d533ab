"""The committer identity is read from git's config files without dulwich (~10 ms of
every ref move's start-up), and must be what dulwich's StackedConfig reads; a file the
small reader does not follow goes to dulwich."""

from __future__ import annotations

import pytest

from layerctl import identity

CASES = {
    "plain": b"[user]\n\tname = Jane Doe\n\temail = jane@example.com\n",
    "case and spacing": b"[User]\n  NAME=Jane   Doe  \nEmail =  jane@example.com\n",
    "comments": b"# top\n[user] ; here\n\tname = Jane # a comment\n\temail = j@x ; too\n",
    "quotes": b'[user]\n\tname = "  Jane ; Doe # x "\n\temail = "j@x"\n',
    "escapes": b'[user]\n\tname = Jane \\"JD\\" Doe\\t!\n\temail = j\\\\x@y\n',
    "last wins": b"[user]\n\tname = A\n[core]\n\tbare = false\n[user]\n\tname = B\n",
    "no email": b"[user]\n\tname = Jane\n",
    "no user": b"[core]\n\tbare = true\n",
    "subsection": b'[user "work"]\n\tname = Work\n[user]\n\tname = Home\n',
    "other keys": b"[user]\n\tsigningkey = ABC\n\tname = Jane\n\temail = j@x\n",
    "empty": b"",
    # left to dulwich:
    "include": b"[include]\n\tpath = other\n[user]\n\tname = Jane\n",
    "continued": b"[user]\n\tname = Jane \\\n Doe\n",
    "odd escape": b"[user]\n\tname = Jane\\qDoe\n",
    "open quote": b'[user]\n\tname = "Jane\n',
}


def _both(tmp_path, monkeypatch, home: bytes, system: bytes | None = None,
          xdg: bytes | None = None) -> tuple[object, object]:
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / ".gitconfig").write_bytes(home)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    monkeypatch.delenv("LAYERCTL_AUTHOR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if xdg is not None:
        (tmp_path / "xdg" / "git").mkdir(parents=True, exist_ok=True)
        (tmp_path / "xdg" / "git" / "config").write_bytes(xdg)
    if system is None:
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        monkeypatch.delenv("GIT_CONFIG_SYSTEM", raising=False)
    else:
        (tmp_path / "system").write_bytes(system)
        monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(tmp_path / "system"))
    try:
        theirs: object = identity._dulwich_git_user()
    except ValueError:
        theirs = ValueError
    return identity._git_user(), theirs


@pytest.mark.parametrize("name", list(CASES))
def test_the_user_read_as_dulwich_reads_it(tmp_path, monkeypatch, name):
    ours, theirs = _both(tmp_path, monkeypatch, CASES[name])
    if name in ("include", "continued", "odd escape", "open quote"):
        assert ours is None  # left to dulwich
    else:
        assert ours == theirs, name


def test_files_stack_as_git_stacks_them(tmp_path, monkeypatch):
    # ~/.gitconfig before $XDG_CONFIG_HOME/git/config before the system file, per key
    ours, theirs = _both(tmp_path, monkeypatch, b"[user]\n\tname = Home\n",
                         system=b"[user]\n\tname = Sys\n\temail = sys@x\n",
                         xdg=b"[user]\n\temail = xdg@x\n")
    assert ours == theirs == (b"Home", b"xdg@x")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "system"))
    assert identity._git_user() == identity._dulwich_git_user() == (b"Sys", b"sys@x")


def test_default_author_from_config_and_its_fallbacks(tmp_path, monkeypatch):
    _both(tmp_path, monkeypatch, CASES["plain"])
    assert identity.default_author() == "Jane Doe <jane@example.com>"
    _both(tmp_path, monkeypatch, CASES["continued"])
    assert identity.default_author() == "Jane Doe <>"  # dulwich joins the lines
    _both(tmp_path, monkeypatch, CASES["no user"])
    assert identity.default_author() == "layerctl <>"
    _both(tmp_path, monkeypatch, CASES["open quote"])
    assert identity.default_author() == "layerctl <>"  # dulwich refuses the file
    monkeypatch.setenv("LAYERCTL_AUTHOR", "Env <e@x>")
    assert identity.default_author() == "Env <e@x>"
