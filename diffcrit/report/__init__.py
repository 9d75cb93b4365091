"""Reports: the one owner of result documents (header, schema, validation on read), the one typed view readers go
through, figures, image grids, sparklines."""
