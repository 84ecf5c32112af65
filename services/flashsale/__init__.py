"""Flashsale: a flash-sale platform that sells exactly its stock, fairly, within per-user limits."""
