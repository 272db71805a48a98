"""The headless CMS under ``/v1/cms``: bilingual (English/Arabic) content, accounts, permissions."""
