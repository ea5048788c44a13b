"""Label Studio: brush RLE (codec), labeling config and tasks (tasks), the JSON importer, the API client."""
