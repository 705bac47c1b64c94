"""The stream processor (quix-streams, exactly once): screening, balance reservation and
settlement per wallet, from one ordered input topic."""
