"""`make demo`: the example exports of configs/ against local sandboxes of Braze, Brevo and a webhook.

Starts the three sandboxes on free ports of 127.0.0.1, points the example connections at
them through the environment (the keys and the webhook's secret are demo ones the sandboxes
are told to accept),
then shows: validate, plugins, connection tests, the plan, a run of every export, a
second run that sends nothing, and ends with what each run sent and what the sandboxes
now hold, each count explained (the Braze sandbox counts segship's connection checks as
bad requests: they are empty requests Braze answers 400). The sandboxes start empty, so
the demo starts from empty state too (configs/.segship is removed first). Nothing leaves
this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from contextlib import ExitStack
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEGSHIP = [sys.executable, "-m", "segship"]
BRAZE_KEY = "demo-braze-key-not-a-secret"
BREVO_KEY = "demo-brevo-key-not-a-secret"
WEBHOOK_SECRET = "demo-webhook-secret-not-a-secret"


def start_sandbox(stack: ExitStack, name: str, *options: str) -> str:
    process = subprocess.Popen([*SEGSHIP, "sandbox", name, "--port", "0", *options], stdout=subprocess.PIPE,
                               text=True)
    stack.callback(lambda: (process.terminate(), process.wait(timeout=10)))
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit(f"the {name} sandbox did not start (it said {url!r})")
    return url


def step(title: str, *args: str, env: dict[str, str], allowed: tuple[int, ...] = (0,)) -> None:
    print(f"\n$ segship {' '.join(args)}    # {title}", flush=True)
    code = subprocess.run([*SEGSHIP, *args], env=env).returncode
    if code not in allowed:
        raise SystemExit(f"segship {args[0]} exited {code}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def main() -> None:
    os.chdir(HERE.parent)
    shutil.rmtree(HERE / ".segship", ignore_errors=True)
    with ExitStack() as stack:
        braze = start_sandbox(stack, "braze", "--api-key", BRAZE_KEY)
        brevo = start_sandbox(stack, "sendinblue", "--api-key", BREVO_KEY, "--process-delay", "0.2")
        webhook = start_sandbox(stack, "webhook", "--secret", WEBHOOK_SECRET)
        print(f"Braze sandbox: {braze}\nBrevo sandbox: {brevo}\nWebhook sandbox: {webhook}")
        env = {**os.environ, "BRAZE_API_KEY": BRAZE_KEY, "BRAZE_REST_ENDPOINT": braze,
               "BREVO_API_KEY": BREVO_KEY, "BREVO_BASE_URL": brevo, "MEMBERS_SERVICE_URL": webhook,
               "MEMBERS_SERVICE_SECRET": WEBHOOK_SECRET, "NO_COLOR": "1"}
        config = ["-c", "configs"]
        step("schema, references, consent, secrets", "validate", *config, env=env)
        step("installed plugins", "plugins", env=env)
        step("the Connect button", "connections", "test", "braze-prod", *config, env=env)
        step("the Connect button", "connections", "test", "brevo-marketing", *config, env=env)
        step("the Connect button", "connections", "test", "members-service", *config, env=env)
        step("what a run would do; sends nothing", "plan", *config, env=env)
        step("first run: every member is sent", "export", "--all", *config, env=env, allowed=(0, 3))
        step("second run: nothing changed, nothing is sent", "export", "--all", *config, env=env, allowed=(0, 3))
        step("run history", "runs", *config, env=env)
        history = json.loads(subprocess.run([*SEGSHIP, "runs", "--format", "json", *config], env=env,
                                            capture_output=True, text=True, check=True).stdout)
        print_summary(history, braze.rstrip("/"), brevo.removesuffix("/v3"), webhook)


def print_summary(history: list[dict], braze_root: str, brevo_root: str, webhook_root: str) -> None:
    """What a newcomer should see: what each run sent, and what the sandboxes now hold, every count explained."""
    print("\nWhat each run sent")
    runs = sorted(history, key=lambda run: run["id"])
    half = len(runs) // 2
    for title, batch in (("first run: ", runs[:half]), ("second run:", runs[half:])):
        reports = [run["report"] for run in batch]
        if not any(report["upserted"] or report["removed"] or report["http"].get("requests") for report in reports):
            print(f"  {title} nothing, and no request: every member was unchanged in state")
            continue
        print(f"  {title} " + "; ".join(f"{run['export']} {run['outcome']}: {run['report']['upserted']} sent, "
                                       f"{run['report']['removed']} removed ({run['report']['http'].get('requests', 0)}"
                                       " requests)" for run in batch))

    print("What the sandboxes hold")
    users = get_json(f"{braze_root}/_sandbox/users?limit=1&array=segship_segments")
    braze = get_json(f"{braze_root}/_sandbox/stats")
    print(f"  Braze: {users['count']} users, by segment: {users.get('array_counts')}; for example")
    for user in users["users"]:
        print("    ", json.dumps(user))
    print(f"  Braze: {braze['requests']} requests; {braze['objects_processed']} users written, "
          f"{braze['objects_refused']} refused. Its {braze['bad_requests']} 'bad requests' are segship's connection "
          "checks\n    (`connections test`, and each run before it sends): an empty /users/track, which Braze "
          "answers 400 \"no data\"\n    without writing anything. The check proves the key works: nothing failed.")
    contacts = get_json(f"{brevo_root}/_sandbox/lists/3/contacts")
    brevo = get_json(f"{brevo_root}/_sandbox/stats")
    print(f"  Brevo: list 3 holds {len(contacts.get('contacts', contacts))} contacts, from {brevo['imports']} "
          f"import(s), {brevo['processes']['failed']} failed; {brevo['requests']} requests (account and list checks, "
          "the import, polling its process).")
    webhook = get_json(f"{webhook_root}/_sandbox/stats")
    print(f"  Webhook: {webhook['members']} members; {webhook['requests']} signed requests (its connection checks are "
          "empty batches, which change nothing).")

if __name__ == "__main__":
    main()
