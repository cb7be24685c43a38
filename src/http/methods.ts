/**
 * The methods a proxied route passes on, for the Allow field of what Outpost answers itself (a 405
 * for CONNECT or TRACE, an OPTIONS that ends here: RFC 9110 §10.2.1). The origin may allow others;
 * these are the ones a client can count on.
 */
export const PROXIED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';
