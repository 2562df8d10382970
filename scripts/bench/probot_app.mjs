// The Probot baseline (servers.KINDS["probot"]): counts pull_request deliveries, serves
// the count on GET /count, and adds X-GitHub-Delivery to each answer for replay.lua.
import { ServerResponse } from "node:http";

const writeHead = ServerResponse.prototype.writeHead;
ServerResponse.prototype.writeHead = function (status, headers) {
  const guid = this.req?.headers["x-github-delivery"];
  return writeHead.call(this, status, guid ? { ...headers, "x-github-delivery": guid } : headers);
};

export default (app, { addHandler }) => {
  let count = 0;
  app.on("pull_request", async () => { count += 1; });
  addHandler((req, res) => req.url === "/count" && (res.writeHead(200).end(`{"count":${count}}`), true));
};
