"""Persistence shared by api and workers: settings, engines, sessions, tables, blobs, audit."""
