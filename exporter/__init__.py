"""captcha-exporter: how often Tor users meet CAPTCHAs, challenges and block pages."""

__version__ = "0.1.0"
