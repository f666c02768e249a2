"""Analytics: read models projected from every service's log."""
