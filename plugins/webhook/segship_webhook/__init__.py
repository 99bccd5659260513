"""segship destination plugin that POSTs segment members to your own service as signed JSON."""
