import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorReply, textReply } from '../pipeline/reply.ts';
import { factsFromHttp1, framingFault, isServerOptions, serverOptionsReply } from './request.ts';
import { respondHttp1 } from './respond.ts';

/** The plain-HTTP listener's default job: 308 to the same URL over HTTPS (method and body kept). */
export function redirectToHttps(httpsPort: number): (req: IncomingMessage, res: ServerResponse) => void {
  return (req: IncomingMessage, res: ServerResponse) => {
    // The framing the HTTPS listener refuses is refused here too, and ends the connection (request.ts).
    const faulty = framingFault(req);
    if (faulty !== undefined) {
      res.shouldKeepAlive = false;
      respondHttp1(res, req.method ?? 'GET', errorReply(faulty), factsFromHttp1(req));
      return;
    }
    if (isServerOptions(req.method ?? 'GET', req.url)) {
      respondHttp1(res, 'OPTIONS', serverOptionsReply(), factsFromHttp1(req));
      return;
    }
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    const target = req.url ?? '/';
    if (!/^(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])$/i.test(host) || !target.startsWith('/')) {
      respondHttp1(res, req.method ?? 'GET', textReply(400, 'Bad Request'), factsFromHttp1(req));
      return;
    }
    const location = `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${target}`;
    respondHttp1(res, req.method ?? 'GET', textReply(308, `Moved to ${location}`, { location }), factsFromHttp1(req));
  };
}
