"""What AWX does around a job, done here without AWX: the test bed has no AWX, but AWX's part is small.

- ``doc_*``: the credential types, the two-line playbook, the fleet inventory source and the container group's pod
  spec, taken verbatim from docs/awx.md (the YAML blocks a user copies into AWX).
- ``validate_credential_type`` and ``inject``: AWX's custom credential types. The input configuration is checked as
  AWX checks it when the type is saved (field ids, required ids, injector templates naming only fields), the
  credential's inputs as when the credential is saved (required fields set), and the injectors are rendered as
  when a job starts: each ``file`` template is written to a file under the job's private data directory's
  ``env/`` and ``tower.filename[.<name>]`` is that file's path inside the EE (``/runner/env/...``); each ``env``
  template becomes an environment variable of the job.
- ``Job``: the private data directory AWX hands ansible-runner (project/, an inventory script, env/extravars as
  JSON), sent as AWX sends it: ``ansible_runner.run(streamer="transmit")`` on the control side, ``ansible-runner
  worker`` where the job runs (an execution node, or the container group's pod), ``ansible-runner process`` back
  on the control side, which writes the job's artifacts (job_events/, stdout, status, rc...).
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
AWX_DOC = REPO / "docs" / "awx.md"
BIN = Path(sys.executable).parent
# AWX's own inventory for a job on "localhost" (docs/awx.md, section 4): the modules run with the EE's Python.
LOCALHOST_VARS = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}


# -- docs/awx.md --------------------------------------------------------------------------------------------------
def _sections(text):
    """[(heading, body)] for every Markdown heading (any level) of the document; a line starting with # inside a
    fenced block is a comment of the block, not a heading."""
    sections, heading, body, fenced = [], "", [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            sections.append((heading, "".join(body)))
            heading, body = line.lstrip("#").strip(), []
        else:
            body.append(line)
    sections.append((heading, "".join(body)))
    return sections[1:]


def _yaml_blocks(body):
    """[(the line of prose before the block, the block's text)] of the ```yaml blocks of a section."""
    blocks = []
    for match in re.finditer(r"^```yaml\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL):
        before = [line.strip() for line in body[:match.start()].splitlines() if line.strip()]
        blocks.append((before[-1] if before else "", match.group(1)))
    return blocks


def doc_section(heading_part, doc=AWX_DOC):
    """The body of the one section of docs/awx.md whose heading contains ``heading_part``."""
    found = [body for heading, body in _sections(Path(doc).read_text()) if heading_part in heading]
    if len(found) != 1:
        raise AssertionError("docs/awx.md: %d sections have %r in their heading" % (len(found), heading_part))
    return found[0]


def doc_credential_type(name, doc=AWX_DOC):
    """(inputs, injectors) of the credential type ``name``: the section "Credential type `name`" holds a block
    after "Input configuration:" and one after "Injector configuration:"."""
    blocks = dict(_yaml_blocks(doc_section("Credential type `%s`" % name, doc)))
    return (yaml.safe_load(blocks["Input configuration:"]), yaml.safe_load(blocks["Injector configuration:"]))


def doc_block(first_line, doc=AWX_DOC):
    """The text of the one YAML block of docs/awx.md whose first line is ``first_line`` (a comment naming it)."""
    found = [block for _heading, body in _sections(Path(doc).read_text()) for _before, block in _yaml_blocks(body)
             if block.splitlines()[0].strip() == first_line]
    if len(found) != 1:
        raise AssertionError("docs/awx.md: %d YAML blocks start with %r" % (len(found), first_line))
    return found[0]


# -- credential types ---------------------------------------------------------------------------------------------
def _template_names(template):
    from jinja2 import meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return meta.find_undeclared_variables(ImmutableSandboxedEnvironment().parse(template))


def validate_credential_type(inputs, injectors):
    """The checks AWX makes when a custom credential type is saved; raises AssertionError naming the problem."""
    fields = inputs.get("fields") or []
    ids = [field["id"] for field in fields]
    assert len(ids) == len(set(ids)), "duplicate field ids: %s" % ids
    for field in fields:
        assert re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", field["id"]), "field id %r is not a valid name" % field["id"]
        assert field.get("type", "string") in ("string", "boolean"), field
        assert "label" in field, "field %r has no label" % field["id"]
    unknown = set(inputs.get("required") or []) - set(ids)
    assert not unknown, "required names no field: %s" % sorted(unknown)
    assert set(injectors) <= {"file", "env", "extra_vars"}, sorted(injectors)
    for label in injectors.get("file") or {}:
        assert re.match(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$", label), "file injector %r" % label
    for kind in ("file", "env", "extra_vars"):
        for key, template in (injectors.get(kind) or {}).items():
            names = _template_names(template) - {"tower", "awx"}
            assert names <= set(ids), "the %s injector %s uses %s, which no field defines" % (
                kind, key, sorted(names - set(ids)))


def inject(credentials, private_data_dir, container_root="/runner"):
    """{env var: value} of ``credentials`` ([(inputs, injectors, values)]) as AWX injects them into a job.

    File templates are written under ``private_data_dir/env`` (mode 0600) and named by their path inside the EE
    (``container_root`` is where the private data directory is there)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    sandbox = ImmutableSandboxedEnvironment()
    env_dir = Path(private_data_dir) / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    env = {}
    for inputs, injectors, values in credentials:
        validate_credential_type(inputs, injectors)
        missing = [name for name in inputs.get("required") or [] if not values.get(name)]
        assert not missing, "the credential lacks the required inputs %s" % missing
        undefined = set(values) - {field["id"] for field in inputs["fields"]}
        assert not undefined, "the credential sets inputs its type does not have: %s" % sorted(undefined)
        namespace = {field["id"]: values.get(field["id"], "") for field in inputs["fields"]}
        filenames = {}
        for label, template in (injectors.get("file") or {}).items():
            handle, path = tempfile.mkstemp(dir=env_dir)
            with os.fdopen(handle, "w") as out:
                out.write(sandbox.from_string(template).render(**namespace))
            os.chmod(path, 0o600)
            in_container = "%s/env/%s" % (container_root, os.path.basename(path))
            if "." in label:
                filenames[label.split(".", 1)[1]] = in_container
            else:
                filenames = in_container
        namespace["tower"] = namespace["awx"] = {"filename": filenames}
        for name, template in (injectors.get("env") or {}).items():
            env[name] = sandbox.from_string(template).render(**namespace)
    return env


# -- jobs ---------------------------------------------------------------------------------------------------------
# The test process's own settings of the test bed, never a job's.
TESTBED_VARIABLES = ("KUBECONFIG", "PREFECT_API", "QHUB_SECRET_", "K8S_AUTH_", "TF_VAR_", "QHUB_PREFECT_TESTBED")
# AWX's write_inventory_file: the job's inventory as a script the EE runs.
INVENTORY_SCRIPT = "#! /usr/bin/env python3\n# -*- coding: utf-8 -*-\nprint(%r)\n"
# AWX's build_execution_environment_params for a job outside a container group: the EE runs as its root (under
# rootless podman, the user owning the private data directory), then DEFAULT_CONTAINER_RUN_OPTIONS.
AWX_CONTAINER_OPTIONS = ("--user=root",)


class Job:
    """A job's private data directory, on the AWX side, and its trip through ansible-runner's stream."""

    def __init__(self, root, ident=None):
        self.root = Path(root)
        # AWX's job id; with process isolation it also names the podman container (ansible_runner_<ident>), so two
        # runs of the tests at once need different ones.
        self.ident = ident or str(uuid.uuid4().int % 10 ** 9)
        self.private_data_dir = self.root / "job"
        (self.private_data_dir / "project").mkdir(parents=True)
        (self.private_data_dir / "inventory").mkdir()
        (self.private_data_dir / "env").mkdir()
        self.processed_dir = self.root / "processed"

    def inject(self, credentials):
        """The job's environment from ``credentials`` ([(inputs, injectors, values)]); see ``inject``."""
        return inject(credentials, self.private_data_dir)

    def add_project_file(self, name, text):
        path = self.private_data_dir / "project" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def set_inventory(self, hosts):
        """{host: vars}, written as AWX writes a job's inventory: an executable script printing the JSON."""
        data = {"all": {"hosts": sorted(hosts)}, "_meta": {"hostvars": hosts}}
        script = self.private_data_dir / "inventory" / "hosts"
        script.write_text(INVENTORY_SCRIPT % json.dumps(data))
        script.chmod(0o700)

    def set_extra_vars(self, extra_vars):
        """The job's extra vars, in env/extravars as JSON; ansible-runner passes them as -e @env/extravars."""
        (self.private_data_dir / "env" / "extravars").write_text(json.dumps(extra_vars))

    def set_cmdline(self, *args):
        """ansible-playbook's other arguments (AWX's write_args_file: --diff for "Show changes", --check...)."""
        (self.private_data_dir / "env" / "cmdline").write_text(" ".join(args))

    def transmit(self, playbook, envvars, **runner_options):
        """The stream AWX sends where the job runs (ansible_runner's transmit): the private data directory zipped,
        and the job's parameters, credentials' environment included."""
        import ansible_runner

        stream = self.root / "transmit.stream"
        with open(stream, "wb") as out:
            # AWX's AWX_RUNNER_OMIT_ENV_FILES (default on): the environment travels in the stream's parameters,
            # not as env/envvars in the private data directory.
            ansible_runner.run(streamer="transmit", _output=out, private_data_dir=str(self.private_data_dir),
                               ident=self.ident, playbook=playbook, inventory="hosts", envvars=envvars,
                               suppress_env_files=True, **runner_options).run()
        return stream

    def work_on_this_machine(self, stream, timeout):
        """``ansible-runner worker`` as an execution node runs it (with process isolation the job runs in podman);
        the stream it sends back. The job's environment is the stream's, not this process's: with process
        isolation podman gets only the names in the env file, and the test's own credentials are left out."""
        env = dict((name, value) for name, value in os.environ.items()
                   if not name.startswith(TESTBED_VARIABLES))
        worker_dir = self.root / "worker"
        results = self.root / "worker.stream"
        with open(stream, "rb") as stdin, open(results, "wb") as stdout:
            done = subprocess.run([str(BIN / "ansible-runner"), "worker", "--private-data-dir", str(worker_dir)],
                                  stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=timeout,
                                  check=False)
        assert done.returncode == 0, "ansible-runner worker failed: %s" % done.stderr.decode()[-3000:]
        return results

    def process(self, results):
        """``ansible-runner process`` of the worker's stream, as AWX does on its side: the job's artifacts land in
        processed/artifacts/<ident>/. Returns that directory."""
        self.processed_dir.mkdir(exist_ok=True)
        with open(results, "rb") as stdin:
            done = subprocess.run([str(BIN / "ansible-runner"), "process", str(self.processed_dir),
                                   "--ident", self.ident], stdin=stdin, capture_output=True, timeout=300, check=False)
        assert done.returncode == 0, "ansible-runner process failed: %s" % done.stderr.decode()[-3000:]
        return self.processed_dir / "artifacts" / self.ident


def artifact_files(artifacts):
    """{relative path: text} of every file of a job's artifacts."""
    return dict((str(path.relative_to(artifacts)), path.read_text(errors="replace"))
                for path in sorted(Path(artifacts).rglob("*")) if path.is_file())


def job_events(artifacts):
    """The job's events in order (their file names start with the event's counter)."""
    paths = sorted((Path(artifacts) / "job_events").glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0]))
    return [json.loads(path.read_text()) for path in paths]
