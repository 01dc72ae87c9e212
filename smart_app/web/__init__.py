"""Web shell: sessions, security headers and CSRF, the home page, the production server."""
