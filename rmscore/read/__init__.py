"""Reading inputs: files, folders and Hub datasets streamed as raw rows, each row laid out as prompt + completions."""
