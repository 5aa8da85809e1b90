"""Two real, self-signed CA certificates for tests (static: no key is kept anywhere)."""

from __future__ import annotations

CA_CERT = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBcDCCARegAwIBAgIUS+kwLwdbjLjnYcaBcfHTWuZAUmQwCgYIKoZIzj0EAwIw\n"
    "LTErMCkGA1UEAwwianVqdS1nZW5lcmF0ZWQgQ0EgZm9yIG1vZGVsICJ0ZXN0IjAg\n"
    "Fw0yNjAxMDEwMDAwMDBaGA8yMTI1MTIwODAwMDAwMFowLTErMCkGA1UEAwwianVq\n"
    "dS1nZW5lcmF0ZWQgQ0EgZm9yIG1vZGVsICJ0ZXN0IjBZMBMGByqGSM49AgEGCCqG\n"
    "SM49AwEHA0IABCK4hMhIJdhP0CHJgQn1uZ0GFq57KVklhnnnGDkogt/1gveHrOGX\n"
    "NqC6AvLbyTwzl9ab1bBSf+GqKRyTxzImq6ujEzARMA8GA1UdEwEB/wQFMAMBAf8w\n"
    "CgYIKoZIzj0EAwIDRwAwRAIgaZ2wQ/yM+E4JrLOalxDKXmu8su+kC/xqEaaMmgXs\n"
    "mEACIAZoGQtPJyF5M7b6TeByfjPfkvyHcaVyk3YEXnP9M2n5\n"
    "-----END CERTIFICATE-----\n"
)

OTHER_CA_CERT = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBSjCB8aADAgECAhQ3UQx/VrfNQ5y55RVWZeJIpF5e4TAKBggqhkjOPQQDAjAa\n"
    "MRgwFgYDVQQDDA9hbm90aGVyIHRlc3QgQ0EwIBcNMjYwMTAxMDAwMDAwWhgPMjEy\n"
    "NTEyMDgwMDAwMDBaMBoxGDAWBgNVBAMMD2Fub3RoZXIgdGVzdCBDQTBZMBMGByqG\n"
    "SM49AgEGCCqGSM49AwEHA0IABFxSd9WicmSoDowRC0gmxkWEWulgEcXPkUUdPV9n\n"
    "Ey/s/ESJYrMt60m2S8/71pw0YF9n0p9kd4IPpr4FTmiiIhmjEzARMA8GA1UdEwEB\n"
    "/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhANduyq9LnxM6E72zzaNTqb/lez2j\n"
    "DfRRCCyk9Bv5KktHAiA6Zu1zXoM808uemPIfSFtgcgqYcO4gxY1D9apNZBtDkA==\n"
    "-----END CERTIFICATE-----\n"
)
