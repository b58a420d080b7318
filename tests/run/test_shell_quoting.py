"""`sh` commands: each interpolated value is quoted for the context it stands in, so whatever
it holds it arrives as one literal piece of text (language reference, section 3, v1.1).

The property tests run the real path in-process: params evaluated by run.actions, the
command composed by Maker (lang.shellquote), run by run.worker.execute through /bin/sh.
A few end-to-end cases go through the zipapp: a hook, a `--param`, a foreach item and an
upstream result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from runkit import explain, run_json, write_project

from flowdsl import check
from flowdsl.lang import execplan, planner, shellquote
from flowdsl.lang.values import EvalError, Secrets, run_values
from flowdsl.run import worker
from flowdsl.run.actions import Maker, evaluate_params
from flowdsl.store import codec, state

# Pieces that mean something to the shell, and anything else Unicode has but NUL (no
# argv or environment can hold one) and lone surrogates (not text).
TOKENS = ["'", '"', "\\", "$(touch pwned)", "`touch pwned`", "$HOME", "${HOME}", "$", "*", "?", "[a]", "\n",
          "\t", " ", "\r", "ü", "日本", "-", "--", "#", ";", "&", "|", "<", ">", "(", ")", "{", "}", "~", "!",
          "%s", "=", "$'", "\\n", "''", '""', "\\'", "EOF", "esac", ")"]
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
VALUES = st.lists(st.one_of(st.sampled_from(TOKENS), CHARS), max_size=10).map("".join)
END = "FLOW_END_MARK"  # the here-documents' delimiter: a value holding it as a line is refused (tested below)


def _sh_knows_dollar_quotes() -> bool:
    out = subprocess.run(["/bin/sh", "-c", "printf %s $'a'"], capture_output=True, text=True).stdout
    return out == "a"


DSQ = "" if _sh_knows_dollar_quotes() else "$"  # what `$'` prints in a shell without $'...' (dash 0.5.12)


def dash_drops_a_byte(*values: str) -> bool:
    """dash 0.5.12 drops the first byte of a non-ASCII character that follows, at the start of a
    here-document's line, the first characters of the delimiter (`F\xe9` under <<FLOW_END_MARK
    prints F and a stray byte); static text suffers the same, so it says nothing of quoting."""
    for line in "\n".join(values).split("\n"):
        k = 0
        while k < len(line) and k < len(END) and line[k] == END[k]:
            k += 1
        if k and k < len(line) and not line[k].isascii():
            return True
    return False


def subst(v: str) -> str:
    """What $(...) gives for a command that prints v: its trailing newlines go."""
    return v.rstrip("\n")


# (context, shell text with @X@ and @Y@ for the fields, what it prints for x and y)
CONTEXTS = [
    ("bare", "printf '[%s]' @X@", lambda x, y: f"[{x}]"),
    ("single quotes", "printf '[%s]' 'v: @X@'", lambda x, y: f"[v: {x}]"),
    ("double quotes", "printf '[%s]' \"v: @X@\"", lambda x, y: f"[v: {x}]"),
    ("single inside double", "printf '[%s]' \"a'@X@'b\"", lambda x, y: f"[a'{x}'b]"),
    ("double inside single", "printf '[%s]' 'a\"@X@\"b'", lambda x, y: f'[a"{x}"b]'),
    ("adjacent", "printf '[%s]' @X@@Y@", lambda x, y: f"[{x}{y}]"),
    ("adjacent in double", "printf '[%s]' \"@X@@Y@\"", lambda x, y: f"[{x}{y}]"),
    ("one word, three quotings", "printf '[%s]' '@X@'@Y@\"@X@\"", lambda x, y: f"[{x}{y}{x}]"),
    ("pieces", "printf '[%s]' pre-@X@-'mid'-\"@Y@\"-post", lambda x, y: f"[pre-{x}-mid-{y}-post]"),
    ("after a dollar", "printf '[%s]' $@X@ \"$@Y@\"", lambda x, y: f"[${x}][${y}]"),
    ("dollar quotes", "printf '[%s]' $'a@X@b'", lambda x, y: f"[{DSQ}a{x}{DSQ}b]"),
    ("command substitution", "printf '[%s]' \"$(printf '%s' @X@)\"", lambda x, y: f"[{subst(x)}]"),
    ("quotes in a substitution", "printf '[%s]' \"$(printf '%s' \"@X@\" '@Y@')\"",
     lambda x, y: f"[{subst(x + y)}]"),
    ("case in a substitution", "printf '[%s]' \"$(case a in a) printf '%s' @X@;; esac)\" @Y@",
     lambda x, y: f"[{subst(x)}][{y}]"),
    ("assignment", "v=@X@ w=\"@Y@\"; printf '[%s]' \"$v$w\"", lambda x, y: f"[{x}{y}]"),
    ("case word and pattern", "case @X@ in @X@) printf '[%s]' @Y@;; *) echo no;; esac", lambda x, y: f"[{y}]"),
    ("comment", "printf '[%s]' ok # @X@ ' @Y@", lambda x, y: "[ok]"),
    ("here-document", f"printf '['; cat <<{END}\n@X@ $HOME_NOT_SET '@Y@'\n{END}\nprintf ']'",
     lambda x, y: f"[{x}  '{y}'\n]"),
    ("quoted here-document", f"printf '['; cat <<'{END}'\n@X@ $HOME '@Y@'\n{END}\nprintf ']'",
     lambda x, y: f"[{x} $HOME '{y}'\n]"),
    ("after a here-document", f"cat <<{END} >/dev/null\nbody\n{END}\nprintf '[%s]' '@Y@'", lambda x, y: f"[{y}]"),
]
# A secret is never in the command's text; a quoted here-document cannot refer to it.
SECRET_CONTEXTS = [c for c in CONTEXTS if c[0] != "quoted here-document"]


def flow_string(shell_text: str) -> str:
    """Shell text as a .flow string literal, @X@ and @Y@ becoming fields."""
    out = (shell_text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
           .replace("{", "{{").replace("}", "}}"))
    return '"' + out.replace("@X@", "{params.x}").replace("@Y@", "{params.y}") + '"'


def combined(contexts) -> str:
    return "\n".join(text for _, text, _ in contexts)


class Harness:
    """A checked pipeline whose attempts are made by run.actions.Maker and run by run.worker.execute."""

    def __init__(self, folder: Path, flow_text: str, modules=None, **defaults) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run" / "logs").mkdir(parents=True, exist_ok=True)
        for name, source in (modules or {}).items():
            (folder / name).write_text(textwrap.dedent(source))
        path = folder / "p.flow"
        path.write_text(textwrap.dedent(flow_text))
        self.defaults = defaults  # param overrides every attempt gets unless given
        loaded = check(str(path))
        errors = [d for d in loaded.diagnostics if d.severity == "error"]
        assert not errors, "\n".join(map(str, errors))
        self.folder = folder
        self.plan = execplan.lower(planner.make_plan(loaded.program, []))
        self.values = run_values("quoting-run", self.plan.pipeline, dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc),
                                 "manual")

    def maker(self, **overrides) -> Maker:
        secrets = Secrets()
        params = evaluate_params(self.plan, dict(self.defaults, **overrides), self.values, secrets)
        return Maker(self.plan, state.RunState(), self.values, params, secrets, str(self.folder / "run"))

    def attempt(self, task: str, **overrides) -> worker.Attempt:
        return self.maker(**overrides).task(self.plan.tasks[task], task, 1)

    def run(self, task: str, **overrides):
        """(the attempt, its result); fails the test with the error if it failed."""
        attempt = self.attempt(task, **overrides)
        outcome = worker.execute(attempt)
        assert outcome.ok, (attempt.target, outcome.error)
        return attempt, codec.decode_result(outcome.result, allow_pickle=False)


ALL = flow_string(combined(CONTEXTS))
ALL_SECRET = flow_string(combined(SECRET_CONTEXTS).replace("@X@", "@S@")).replace("@S@", "{params.s}")
THREE = flow_string("printf '[%s]' @X@ '@X@' \"@X@\"")


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Harness:
    folder = tmp_path_factory.mktemp("quoting")
    # s: a param whose default is a secret, so that the value given for it is one
    return Harness(folder, f"""
        pipeline quoting {{
            params {{
                x = ""
                y = ""
                s = secret("FLOW_QUOTING_TEST_NEVER_SET")
            }}
        }}
        task all {{ sh {ALL} }}
        task all_secret {{ sh {ALL_SECRET} }}
        task three {{ sh {THREE} }}
    """, s="tok-unused")


def expected(contexts, x: str, y: str) -> str:
    return "".join(fn(x, y) for _, _, fn in contexts)


def test_every_context_is_in_the_property_test(harness):
    """The combined command holds each context once, and an ordinary value passes through all of them."""
    attempt, result = harness.run("all", x="plain", y="words")
    assert result == expected(CONTEXTS, "plain", "words")
    assert len({name for name, _, _ in CONTEXTS}) == len(CONTEXTS) >= 20


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=VALUES, y=VALUES)
def test_any_value_arrives_literally_in_every_context(harness, x, y):
    assume(END not in x and END not in y and not dash_drops_a_byte(x, y))
    attempt, result = harness.run("all", x=x, y=y)
    assert result == expected(CONTEXTS, x, y), attempt.target
    assert not list(harness.folder.glob("pwned*"))
    assert not any(k.startswith("FLOW_SECRET_") for k in attempt.env)


@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=VALUES, y=VALUES)
def test_a_secret_arrives_literally_and_never_in_the_command(harness, x, y):
    """The value given for a secret param is a secret: the command refers to it through its environment."""
    secret = "tok-" + x
    assume(END not in secret and END not in y and "tok-" not in y and not dash_drops_a_byte(y))
    attempt, result = harness.run("all_secret", s=secret, y=y)
    assert result == expected(SECRET_CONTEXTS, secret, y), attempt.target
    assert secret not in attempt.target
    assert list(attempt.env.values()).count(secret) == 1 and attempt.env["FLOW_SECRET_1"] == secret
    assert secret in attempt.secrets  # masked in what the attempt writes
    assert not list(harness.folder.glob("pwned*"))


def test_outside_quotes_every_value_is_quoted(harness):
    """Even a value with nothing special is quoted bare: `~root`, `PATH=x` or `if` stay words."""
    for x in ("~root", "PATH=x", "if", "a b", ""):
        attempt, result = harness.run("three", x=x)
        assert result == f"[{x}][{x}][{x}]"
        assert attempt.target.startswith("printf '[%s]' '")


# ---- whatever the author writes around the fields, no value becomes code ------------------------------

# Bits of shell text to build templates from at random: quotes, escapes, expansions, comments,
# here-documents, case statements; and values made to break out of each.
STATIC_BITS = ["'", '"', "\\", "$", "(", ")", "{", "}", "`", "#", "\n", " ", ";", "<<E", "<<'E'", "<<-E", '<<"E"', "E",
               "\nE\n", "$(", "${", "$((", "case ", "esac", " in ", "echo ", "a", "|", "&", ":", "*", "$'", "x)", ";;",
               "\t", "=", "~", "1"]
BREAKOUTS = ["$(touch pwned1)", "`touch pwned2`", "'; touch pwned3; '", '"; touch pwned4; "', "\ntouch pwned5\n",
             "E\ntouch pwned6\n", "\\", "'", '"', "$(", "`", ")", "\nE\ntouch pwned7\n", "x'\"`$(touch pwned8)`\"'",
             "';touch pwned9;#", '";touch pwned10;#', "\\';touch pwned11;#", "}", "))", "1", "\t\ntouch pwned12\n"]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.lists(st.sampled_from(STATIC_BITS), max_size=6).map("".join),
                          st.tuples(st.sampled_from(BREAKOUTS), st.booleans())), min_size=1, max_size=8))
def test_no_template_lets_a_value_run(tmp_path, pieces):
    """For any static text, each field is placed literally or refused (PlacementError): never run."""
    parts = [shellquote.Value(p[0], p[1], "x") if isinstance(p, tuple) else p for p in pieces]
    try:
        command, env = shellquote.compose(parts)
    except shellquote.PlacementError:
        return
    folder = tmp_path / "run"
    folder.mkdir(exist_ok=True)
    try:
        subprocess.run(["/bin/sh", "-c", command], cwd=folder, env=dict(env, PATH=os.defpath), capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10)
    except subprocess.TimeoutExpired:
        pass
    assert [p.name for p in folder.iterdir() if p.name.startswith("pwned")] == [], command
    for p in folder.iterdir():  # hypothesis runs every example in this one tmp_path
        if p.is_file():
            p.unlink()


# ---- where no quoting is safe: the task fails with EvalError, nothing runs ------------------------


PARAMS = 'pipeline p { params { x = "" } }\n'
REFUSED = [
    ("backticks", "printf '%s' `printf '%s' @X@`", "backticks"),
    ("backticks around quotes", "echo \"`echo '@X@'`\"", "backticks"),
    ("parameter word", "printf '%s' \"${UNSET:-@X@}\"", "${...}"),
    ("backslash outside quotes", "printf '%s' \\@X@", "backslash"),
    ("backslash in double quotes", "printf '%s' \"\\@X@\"", "backslash"),
    ("backslash in a here-document", f"cat <<{END}\n\\@X@\n{END}", "backslash"),
    ("here-document delimiter", "cat <<@X@\nbody\n", "delimiter"),
    ("arithmetic, not an integer", "echo $(( @X@ + 1 ))", "integer"),
    ("arithmetic inside quotes", "echo $(( \"@X@\" + 1 ))", "$((...))"),
    ("after \\' in $'...'", "printf '%s' $'it\\'s' @X@", "disagree"),
]


@pytest.mark.parametrize("text, says", [pytest.param(t, s, id=n) for n, t, s in REFUSED])
def test_unsafe_places_are_refused_for_any_value(tmp_path, text, says):
    h = Harness(tmp_path, f"{PARAMS} task t {{ sh {flow_string(text)} }}")
    for x in ("plain", "a'b", "$(touch pwned)"):
        with pytest.raises(EvalError) as e:
            h.attempt("t", x=x)
        assert says in str(e.value) and "{params.x}" in str(e.value), str(e.value)


def test_a_value_that_would_end_a_here_document_is_refused(tmp_path):
    plain = flow_string(f"cat <<{END}\n@X@\n{END}")
    quoted = flow_string(f"cat <<'{END}'\na@X@\n{END}")
    h = Harness(tmp_path, f"""
        {PARAMS}
        task t {{ sh {plain} }}
        task quoted {{ sh {quoted} }}
    """)
    for x in (END, f"a\n{END}\ntouch pwned", f"x\n{END}"):
        with pytest.raises(EvalError, match="here-document"):
            h.attempt("t", x=x)
    with pytest.raises(EvalError, match="here-document"):
        h.attempt("quoted", x=f"\n{END}\ntouch pwned")
    assert h.run("t", x=f"{END}x")[1] == f"{END}x"
    assert not list(tmp_path.glob("pwned*"))


def test_a_tab_that_a_dash_here_document_would_remove_is_refused(tmp_path):
    text = flow_string(f"printf '['; cat <<-{END}\n\t@X@ x@X@\n\t{END}\nprintf ']'")
    h = Harness(tmp_path, f"{PARAMS} task t {{ sh {text} }}")
    assert h.run("t", x="a\tb $HOME")[1] == "[a\tb $HOME xa\tb $HOME\n]"
    for x in ("\tlead", "a\n\tb"):
        with pytest.raises(EvalError, match="<<-"):
            h.attempt("t", x=x)


def test_arithmetic_takes_an_integer(tmp_path):
    h = Harness(tmp_path, PARAMS + "task t { sh \"echo $(( {params.x} * 2 )) $(({params.x}-1))\" }")
    assert h.run("t", x="21")[1] == "42 20"
    assert h.run("t", x="-5")[1] == "-10 -6"


def test_a_field_in_a_comment_is_left_out(tmp_path):
    h = Harness(tmp_path, PARAMS + "task t { sh \"echo one # {params.x}\\necho two\" }")
    attempt, result = h.run("t", x="x\ntouch pwned\necho three")
    assert result == "one\ntwo"
    assert not list(tmp_path.glob("pwned*"))


def test_a_secret_in_exec_is_refused_naming_the_task(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_QUOTING_TOKEN", "tok-exec")
    h = Harness(tmp_path, """
        pipeline p { params { token = secret("FLOW_QUOTING_TOKEN") } }
        task leaky { exec ["curl", "-H", "Authorization: {params.token}"] }
        task fine { exec ["sh", "-c", "printf %s \\"$FLOW_ARG_T\\""]  with { t = params.token } }
    """)
    with pytest.raises(EvalError) as e:
        h.attempt("leaky")
    assert "`leaky`" in str(e.value) and "FLOW_ARG_" in str(e.value) and "tok-exec" not in str(e.value)
    attempt, result = h.run("fine")
    assert result == "tok-exec" and "tok-exec" not in " ".join(attempt.argv)


def test_a_secret_inside_a_list_goes_by_the_environment_too(tmp_path, monkeypatch):
    """A field's text is JSON for a list: the secret in it is escaped there, and found all the same."""
    monkeypatch.setenv("FLOW_QUOTING_TOKEN", 'tok-"quoted"\\ü')
    h = Harness(tmp_path, """
        pipeline p { params { creds = [secret("FLOW_QUOTING_TOKEN"), "user"] } }
        task shows { sh "printf '%s' {params.creds}" }
        task argv { exec ["printf", "%s", "{params.creds}"] }
    """)
    attempt, result = h.run("shows")
    assert json.loads(result) == ['tok-"quoted"\\ü', "user"]
    assert "tok-" not in attempt.target and attempt.env["FLOW_SECRET_1"] == result
    with pytest.raises(EvalError, match="`argv`"):
        h.attempt("argv")


def test_secret_sources_are_hidden_from_the_tasks_that_do_not_use_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOW_QT_A", "tok-a")
    monkeypatch.setenv("FLOW_QT_B", "tok-b")
    monkeypatch.setenv("FLOW_QT_PLAIN", "not a secret")
    h = Harness(tmp_path, """
        pipeline p {
            params { a = secret("FLOW_QT_A") }
            on finish sh "env > hook_env.txt"
            on finish run m:hook
        }
        task uses_a { sh "env"  with { k = params.a }  output lines }
        task uses_b { run m:f  with { b = secret("FLOW_QT_B") } }
        task neither { sh "env"  output lines }
        task neither_exec { exec ["env"]  output lines }
        task names_b { sh "test -n \\"${{FLOW_QT_B}}\\" && env"  output lines }
        task names_a_in_argv { exec ["sh", "-c", "echo $FLOW_QT_A"] }
        task module_reads_a { run reads:f }
    """, {"m.py": "def f(b):\n    return 1\n\ndef hook(report):\n    pass\n",
          "reads.py": "import os\n\ndef f():\n    return os.environ.get('FLOW_QT_A')\n"})
    maker = h.maker()
    hide = {name: maker.task(h.plan.tasks[name], name, 1).hide for name in h.plan.tasks}
    both = ("FLOW_QT_A", "FLOW_QT_B")
    assert hide == {"uses_a": ("FLOW_QT_B",), "uses_b": ("FLOW_QT_A",), "neither": both, "neither_exec": both,
                    "names_b": ("FLOW_QT_A",), "names_a_in_argv": ("FLOW_QT_B",),
                    "module_reads_a": ("FLOW_QT_B",)}
    assert [maker.hook(hook, 1, {}, "success", None).hide for hook in h.plan.hooks] == [both, both]
    for name in ("neither", "neither_exec"):
        lines = h.run(name)[1]
        assert "FLOW_QT_PLAIN=not a secret" in lines
        assert not [line for line in lines if line.startswith(("FLOW_QT_A=", "FLOW_QT_B="))], lines
    lines = h.run("uses_a")[1]
    assert "FLOW_QT_A=tok-a" in lines and "FLOW_ARG_K=tok-a" in lines
    assert not [line for line in lines if line.startswith("FLOW_QT_B=")]
    lines = h.run("names_b")[1]
    assert "FLOW_QT_B=tok-b" in lines and not [line for line in lines if line.startswith("FLOW_QT_A=")]
    assert os.environ["FLOW_QT_A"] == "tok-a"  # the runner's own environment is untouched


# ---- end to end, through the zipapp ---------------------------------------------------------------

HOSTILE = ["it's", 'say "hi"', "$(touch pwned_a)", "`touch pwned_b`", "a; touch pwned_c", "*", "back\\slash",
           "two\nlines", "", "-n", "# not a comment", "ünï 日本"]

E2E_MODULE = {
    "hostile.py": f"""
        def items():
            return {HOSTILE!r}

        def one():
            return {HOSTILE[0] + HOSTILE[2] + HOSTILE[6]!r}
    """,
}


def test_end_to_end_param_foreach_upstream_and_hook(flow, tmp_path):
    cli_value = "c'l\"i $(touch pwned_cli) `touch pwned_cli2` \\ *"
    f = write_project(tmp_path, r"""
        pipeline e2e {
            params { c = "placeholder" }
            on finish sh "printf '%s|' 'hook: {params.c}' \"{run.id}\" {params.c} > hook.out"
        }
        task up { run hostile:items }
        task single { run hostile:one }
        task each {
            foreach item in up
            sh "printf '<%s>' \"{item}\" '{item}' {item}"
        }
        task from_upstream { sh "printf '%s|' 'one: {single}' \"{single}\" x{single}x" }
        task from_param { sh "printf '%s|' '{params.c}' \"{params.c}\" {params.c}" }
    """, E2E_MODULE)
    (tmp_path / "decoy.txt").write_text("what a glob would find")
    proc, report = run_json(flow, f, "--param", f"c={cli_value}")
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    for i, item in enumerate(HOSTILE):
        assert tasks[f"each[{i}]"]["result"] == f"<{item}>" * 3, item
    single = HOSTILE[0] + HOSTILE[2] + HOSTILE[6]
    assert tasks["from_upstream"]["result"] == f"one: {single}|{single}|x{single}x|"
    assert tasks["from_param"]["result"] == f"{cli_value}|" * 3
    run_id = report["run_id"]
    assert (tmp_path / "hook.out").read_text() == f"hook: {cli_value}|{run_id}|{cli_value}|"
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


def test_end_to_end_a_refused_placement_fails_the_task_only(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline refused { params { x = "v" } }
        task backticks { sh "echo `echo {params.x}`" }
        task fine { sh "echo '{params.x}'" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    err = report["tasks"]["backticks"]["error"]
    assert err["type"] == "EvalError" and "backticks" in err["message"]
    assert report["tasks"]["backticks"]["attempts"] == 0
    assert report["tasks"]["fine"]["result"] == "v"
