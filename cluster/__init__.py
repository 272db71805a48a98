"""Runtime: settings, Ray and database start-up, the `pulse` CLI, Serve config. No business logic."""
