"""A stand-in Kubernetes API server for the local quick start: answers the provider's
service-account lookup with an IRSA role annotation, as an EKS cluster would."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

ROLE = "arn:aws:iam::123456789012:role/shop"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/api/v1/namespaces/shop/serviceaccounts/shop":
            body = {"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "shop", "namespace": "shop",
                                 "annotations": {"eks.amazonaws.com/role-arn": ROLE}}}
            status = 200
        else:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            status = 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
