// Proof of work (test bed): find a nonce such that SHA-256(challenge + nonce),
// in hex, starts with `difficulty` zeros; pass-challenge checks the answer.
import { sha256hex } from "./sha256.mjs";

function solve() {
  const { challenge, rules } = JSON.parse(document.getElementById("anubis_challenge").textContent);
  const base = JSON.parse(document.getElementById("anubis_base_prefix").textContent);
  const status = document.getElementById("status");
  const progress = document.getElementById("progress");
  const bar = progress.querySelector(".bar-inner");
  const zeros = "0".repeat(rules.difficulty);
  const expected = 16 ** rules.difficulty;
  const started = performance.now();
  let nonce = 0;
  status.textContent = "Calculating...";
  progress.style.display = "block";

  function work() {
    const until = performance.now() + 40;
    while (performance.now() < until) {
      for (let i = 0; i < 500; i++, nonce++) {
        const hash = sha256hex(challenge + nonce);
        if (hash.startsWith(zeros)) return done(hash, nonce);
      }
    }
    bar.style.width = `${Math.round(100 * (1 - Math.exp(-nonce / expected)))}%`;
    setTimeout(work, 0);
  }

  function done(hash, found) {
    const elapsed = Math.round(performance.now() - started);
    bar.style.width = "100%";
    status.textContent = `Success! Took ${elapsed}ms, ${found + 1} iterations`;
    const url = new URL(`${base}/.within.website/x/cmd/anubis/api/pass-challenge`, location.href);
    url.searchParams.set("challenge", challenge);
    url.searchParams.set("response", hash);
    url.searchParams.set("nonce", String(found));
    url.searchParams.set("redir", location.pathname + location.search);
    url.searchParams.set("elapsedTime", String(elapsed));
    location.replace(url.href);
  }

  work();
}

if (document.getElementById("anubis_challenge")) solve();
