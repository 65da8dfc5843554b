"""The issuer's browser-facing pages: sign-in form, cookies, CSRF defences.

``login`` serves ``/.auth/account/login``; ``cookies`` names and sets the
``__Host-`` cookies and the security headers of every page; ``csrf`` holds the
same-origin check and the signed double-submit token; ``pages`` renders HTML
with every value escaped. Nothing here needs JavaScript or a template engine.
"""
