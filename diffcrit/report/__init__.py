"""Reports: the one owner of result documents (header, schema, validation on read), figures, sparklines."""
