"""The chrome-context wipe script, run under node with stand-ins for Firefox's XPCOM globals.

The stand-ins record every call, so the test sees which stores the script
clears, that keep-alive connections are pruned, and that it answers the async
callback only once the clear-data service reports back.
"""

import json
import shutil
import subprocess

import pytest

from exporter.fetch.gecko import WIPE_SCRIPT

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the script")

HARNESS = """
const calls = [];
const record = (name) => (...args) => { calls.push([name, ...args.filter(a => typeof a !== "object" || a === null)]); };
let pendingCallback = null;
const Ci = {
  nsIHttpAuthManager: "nsIHttpAuthManager",
  nsISecretDecoderRing: "nsISecretDecoderRing",
  nsIClearDataService: {CLEAR_ALL: 0xFFFFFF},
};
const services = {
  "@mozilla.org/network/http-auth-manager;1": {clearAll: record("httpAuth.clearAll")},
  "@mozilla.org/security/sdr;1": {logoutAndTeardown: record("sdr.logoutAndTeardown")},
};
const Cc = new Proxy({}, {get: (_, id) => ({getService: (iface) => services[id]})});
const Services = {
  cache2: {clear: record("cache2.clear")},
  cookies: {removeAll: record("cookies.removeAll")},
  obs: {notifyObservers: record("obs.notifyObservers")},
  clearData: {deleteData: (flags, callback) => { calls.push(["clearData.deleteData", flags]); pendingCallback = callback; }},
};
const done = (value) => { calls.push(["done", value]); };
(function () { SCRIPT }).apply(null, [done]);
calls.push(["script returned"]);
pendingCallback.onDataDeleted(FAILED);
console.log(JSON.stringify(calls));
"""


def run_wipe(failed_flags: int) -> list:
    program = HARNESS.replace("SCRIPT", WIPE_SCRIPT).replace("FAILED", str(failed_flags))
    done = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_wipe_clears_every_store_prunes_connections_then_answers():
    calls = run_wipe(0)
    names = [call[0] for call in calls]
    for step in ("cache2.clear", "cookies.removeAll", "httpAuth.clearAll", "sdr.logoutAndTeardown"):
        assert step in names
    assert ["obs.notifyObservers", None, "net:prune-all-connections"] in calls
    assert ["clearData.deleteData", 0xFFFFFF] in calls
    # the callback fires only when the clear-data service reports back, after the script returned
    assert names[-2:] == ["script returned", "done"] and calls[-1] == ["done", 0]


def test_wipe_passes_on_the_kinds_it_could_not_clear():
    assert run_wipe(0x40)[-1] == ["done", 0x40]
