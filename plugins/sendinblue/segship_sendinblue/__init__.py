"""segship destination plugin for Sendinblue (Brevo)."""
