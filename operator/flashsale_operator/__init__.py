"""The FlashSale operator: a pure decision core, Kopf adapters for Kubernetes, and a local driver."""
