"""The stream processor (faust): screening, balance reservation and settlement per wallet."""
