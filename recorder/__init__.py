"""Episode recording: the Step contract, episode files, readers and listing."""
