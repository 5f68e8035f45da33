"""The vendors a verdict can name: gate vendors (challenge, block, error) and CAPTCHA vendors (widget).

Together with operators' own signature names they are the values of the
`provider` label, so the set stays bounded.
"""

GATE_PROVIDERS = (
    "cloudflare", "datadome", "perimeterx", "akamai", "imperva", "aws-waf", "sucuri",
    "kasada", "f5", "ddos-guard", "qrator", "vercel", "anubis", "fastly", "mcaptcha", "generic",
)
WIDGET_PROVIDERS = ("recaptcha", "hcaptcha", "turnstile", "geetest", "arkose", "friendlycaptcha", "mcaptcha")
# CAPTCHA vendors that belong to a gate vendor: their widget on a refusal names the gate.
WIDGET_GATES = {"turnstile": "cloudflare", "mcaptcha": "mcaptcha"}
