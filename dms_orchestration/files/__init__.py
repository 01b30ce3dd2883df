"""Files the loader writes (report outputs) and reads (landed files), streamed: memory
holds one batch of rows, whatever the file's size."""
