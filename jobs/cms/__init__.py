"""The job side of the CMS: embedding what the CMS scheduler's search sync wrote."""
